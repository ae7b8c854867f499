/**
 * The tables of `KafkaProjectionRunner`, as migrations the application runs with its own. No
 * driver is imported here, so an application can list them without loading the Kafka client.
 *
 * - `keel_kafka_projections`: one row per projection and topic, the row every batch and every
 *   rebuild locks first, so runners of one projection take turns even before any offset is stored.
 * - `keel_kafka_projection_offsets`: per partition, the offset of the next record the projection
 *   applies (Kafka's committed-offset convention), written in the transaction that applies the
 *   records before it. A partition without a row starts at its earliest retained record.
 *   `topic_id` (0002): the id of the topic the offset is of (KIP-516: a UUID per topic, new when a
 *   topic is deleted and created again), checked against the topic's id before every batch.
 *   `NULL` on rows stored before 0002 (and from a broker without topic ids): the projection's next
 *   look refuses them if one is of a partition the topic lacks, else stamps every such row with
 *   the id of the topic it fetched from (adopts it; `otherTopic` in topic-incarnation.ts says
 *   what cannot be told).
 */
export const kafkaProjectionMigrations = [
  {
    id: 'keel_kafka_projection_0001_create',
    sql: `
CREATE TABLE IF NOT EXISTS keel_kafka_projections (
  projection text NOT NULL,
  topic text NOT NULL,
  rebuilt_at timestamptz,
  PRIMARY KEY (projection, topic)
);
CREATE TABLE IF NOT EXISTS keel_kafka_projection_offsets (
  projection text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  next_offset bigint NOT NULL CHECK (next_offset >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (projection, topic, partition)
);
`,
  },
  {
    id: 'keel_kafka_projection_0002_topic_id',
    sql: `ALTER TABLE keel_kafka_projection_offsets ADD COLUMN IF NOT EXISTS topic_id uuid;`,
  },
] as const;
