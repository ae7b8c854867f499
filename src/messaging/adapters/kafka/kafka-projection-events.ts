import type { AppliedRange } from './batch-offsets.ts';
import type { SkippedRecords } from './offset-out-of-range.ts';
import type { TopicRestart } from './topic-incarnation.ts';

export interface KafkaProjectionRunnerEvents {
  /** A batch committed, with the partitions' offsets stored past it. */
  applied: { count: number; partitions: AppliedRange[] };
  /**
   * `onTrimmed: 'resume'`: the partition's stored offset `from` was below its first retained
   * offset `to`, and moved there: offsets `from` to `to - 1` were never applied (deleted). Once
   * the transaction that stored the move committed (the batch that follows it), before its
   * `applied`.
   */
  skipped: SkippedRecords;
  /**
   * `onRecreated: 'restart'`: the stored offsets (`dropped`) were of the topic `storedTopicId`,
   * deleted since; the projection now applies the topic `topicId` from its earliest records.
   * Once the transaction that dropped them committed (the batch that follows), before its
   * `applied`.
   */
  restarted: TopicRestart;
}

/** Where a look reports what its batches committed: the runner's `events`. */
export interface ProjectionEventSink {
  emit<K extends keyof KafkaProjectionRunnerEvents>(name: K, payload: KafkaProjectionRunnerEvents[K]): void;
}
