-- The order stream is a Kafka topic when the shop's queues run on Kafka (KEEL_BROKER=kafka), and a
-- record's place there is a partition and an offset: a skipped event is keyed by both. The
-- PostgreSQL stream is one partition, 0, and its position. A record written without keel's
-- headers has no UUID: its id is where it sits (`kafka-<topic>-<partition>-<offset>`).
ALTER TABLE analytics_skipped_events ADD COLUMN stream_partition integer NOT NULL DEFAULT 0;
ALTER TABLE analytics_skipped_events DROP CONSTRAINT analytics_skipped_events_pkey;
ALTER TABLE analytics_skipped_events ADD PRIMARY KEY (stream_partition, position);
ALTER TABLE analytics_skipped_events ALTER COLUMN event_id TYPE text;
