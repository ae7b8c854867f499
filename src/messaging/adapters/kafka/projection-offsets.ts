// The rows a KafkaProjectionRunner keeps in its tables (kafka-projection-schema.ts): the
// projection's lock row and, per partition, the stored offset with the id of the topic it is of.
import type { Queryable } from '../../../db/db.ts';
import type { StoredOffset } from './topic-incarnation.ts';

/** Which projection of which topic the rows are of. */
export interface ProjectionKey {
  projection: string;
  topic: string;
}

/** Locks the projection's row, creating it: every batch and every rebuild takes it first. */
export async function lockProjection(tx: Queryable, key: ProjectionKey): Promise<void> {
  await tx.query(
    `INSERT INTO keel_kafka_projections AS p (projection, topic) VALUES ($1, $2)
     ON CONFLICT (projection, topic) DO UPDATE SET rebuilt_at = p.rebuilt_at`,
    [key.projection, key.topic],
  );
}

/** The stored offsets, per partition in order, each with the id of the topic it is of. */
export async function readStored(
  queryable: Queryable,
  key: ProjectionKey,
): Promise<Map<number, StoredOffset>> {
  const { rows } = await queryable.query<{ partition: number; next: string; topic_id: string | null }>(
    `SELECT partition, next_offset::text AS next, topic_id::text FROM keel_kafka_projection_offsets
     WHERE projection = $1 AND topic = $2 ORDER BY partition`,
    [key.projection, key.topic],
  );
  return new Map(
    rows.map((row) => [Number(row.partition), { next: BigInt(row.next), topicId: row.topic_id }]),
  );
}

/** The stored offsets without their topic ids. */
export function offsetsOf(stored: ReadonlyMap<number, StoredOffset>): Map<number, bigint> {
  return new Map([...stored].map(([partition, { next }]) => [partition, next]));
}

/** Stores `next` for its partitions, of the topic `topicId`. */
export async function storeOffsets(
  tx: Queryable,
  key: ProjectionKey,
  next: ReadonlyMap<number, bigint>,
  topicId: string | null,
): Promise<void> {
  if (next.size === 0) return;
  const offsets = [...next].map(([partition, offset]) => ({ partition, next: String(offset) }));
  await tx.query(
    `INSERT INTO keel_kafka_projection_offsets (projection, topic, partition, next_offset, topic_id)
     SELECT $1, $2, (e.doc->>'partition')::integer, (e.doc->>'next')::bigint, $4::uuid
     FROM jsonb_array_elements($3::jsonb) AS e(doc)
     ON CONFLICT (projection, topic, partition) DO UPDATE
       SET next_offset = excluded.next_offset, topic_id = excluded.topic_id, updated_at = now()`,
    [key.projection, key.topic, JSON.stringify(offsets), topicId],
  );
}

/** Stamps the offsets stored without a topic id (before migration 0002) with `topicId`. */
export async function adoptTopicId(tx: Queryable, key: ProjectionKey, topicId: string): Promise<void> {
  await tx.query(
    `UPDATE keel_kafka_projection_offsets SET topic_id = $3::uuid
     WHERE projection = $1 AND topic = $2 AND topic_id IS NULL`,
    [key.projection, key.topic, topicId],
  );
}

/** Deletes every stored offset of the projection: its partitions start at their earliest records. */
export async function dropOffsets(tx: Queryable, key: ProjectionKey): Promise<void> {
  await tx.query('DELETE FROM keel_kafka_projection_offsets WHERE projection = $1 AND topic = $2', [
    key.projection,
    key.topic,
  ]);
}
