import type { Db } from '../../../db/db.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { Projection } from '../../projection.ts';
import { assertTopic, resolveOptions } from './kafka-options.ts';
import { staleLeaderLimitMs } from './stale-leader.ts';
import type { KafkaEntry } from './topic-fetcher.ts';

export interface KafkaProjectionRunnerOptions {
  /** The projection's name, its key in `keel_kafka_projection_offsets`; [A-Za-z0-9_.:-], 1-200 chars. */
  name: string;
  /** The topic it reads: every partition. */
  topic: string;
  /** Bootstrap servers, `host:port`. Default: `KEEL_KAFKA_BROKERS` (comma-separated), else `127.0.0.1:9092`. */
  brokers?: readonly string[];
  /** Client id sent to Kafka. Default `keel`. */
  clientId?: string;
  /** Default the system clock. */
  clock?: Clock;
  /** Records per transaction at most. Default 100. */
  batchSize?: number;
  /** Longest a fetch waits on Kafka for a first new record (the wait of an idle runner); >= 1. Default 500 ms. */
  maxWaitMs?: number;
  /** How often to look for the topic while it does not exist. Default 1 000 ms. */
  pollIntervalMs?: number;
  /** How long to wait after a failed fetch or batch before trying again. Default 1 000 ms. */
  retryDelayMs?: number;
  /**
   * How long failures on Kafka's answers that a partition's leader moved or is being elected
   * (NOT_LEADER_OR_FOLLOWER and the like, and a fetch refused as out of range for offsets the
   * partitions' ranges show valid: `staleLeaderAnswers`) may go on before they count:
   * until then each is retried after `retryDelayMs` on metadata asked of Kafka afresh, quietly.
   * The running loop then reports each as an `error` event until a look goes through; a one-shot
   * call (`catchUp()`, `partitions()`, `progress()`, `lag()`), which counts its own failures from
   * its first, rejects with the last. An integer >= 0; 0 reports or rejects at the first, as any
   * failure. Default 30 000 ms (`staleLeaderLimitMs` in stale-leader.ts says why).
   */
  staleLeaderLimitMs?: number;
  /**
   * What to do when records were deleted from a partition (retention, the admin DeleteRecords
   * call) past the stored offset, so records this projection never applied are gone: `'throw'`
   * fails each look with `KafkaPartitionTrimmedError` (`KEEL_STREAM_TRIMMED`; an `error` event,
   * retried every `retryDelayMs`) until someone decides, by `rebuild()` or by this option;
   * `'resume'` moves the partition's offset to its first retained record, in the transaction of
   * the batch that follows, emits `skipped`, and applies on from there. Default `'throw'`: a read
   * model silently missing records is worse than a stopped one. A stored offset past the
   * partition's end is another matter (`KafkaOffsetPastEndError`), whatever this says.
   */
  onTrimmed?: 'throw' | 'resume';
  /**
   * What to do when the stored offsets are of another topic than the one of that name now (the
   * topic id stored with them is not the topic's: it was deleted and created again): `'throw'`
   * fails each look with `KafkaTopicRecreatedError` (`KEEL_STREAM_REPLACED`; an `error` event,
   * retried every `retryDelayMs`) until someone decides, by `rebuild()` or by this option;
   * `'restart'` drops the old topic's offsets and applies the new topic from its earliest
   * records, into the model as it is (what it applied from the old topic stays), in the
   * transaction of the batch that follows, and emits `restarted`. Default `'throw'`: the old
   * offsets say nothing about the new topic, and whether the model should keep what the old one
   * put in it is the application's call.
   */
  onRecreated?: 'throw' | 'restart';
  /**
   * How long one call to Kafka or to the database may go unanswered before `health()` says it
   * hangs. A batch's transaction waits on the projection's row lock while another runner of the
   * projection applies its batch: with several runners, set this above the longest batch yours
   * applies. An integer >= 1. Default 30 000 ms (as `staleLeaderLimitMs`, and the lease keel's
   * queue and saga runner allow a silent process) plus `maxWaitMs` (a fetch waits that long on
   * Kafka for a first record).
   */
  silentMs?: number;
}

/** The options with their defaults applied, checked. */
export interface ResolvedProjectionRunnerOptions {
  name: string;
  topic: string;
  /** How the runner's clients connect. */
  client: { clientId: string; brokers: string[] };
  clock: Clock;
  batchSize: number;
  maxWaitMs: number;
  pollIntervalMs: number;
  retryDelayMs: number;
  staleLeaderLimitMs: number;
  onTrimmed: 'throw' | 'resume';
  onRecreated: 'throw' | 'restart';
  silentMs: number;
}

const projectionName = /^[A-Za-z0-9_.:-]{1,200}$/;

// See `KafkaProjectionRunnerOptions.silentMs`.
const defaultSilentMs = 30_000;

function positiveInteger(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}

/**
 * Checks a runner's arguments and applies the options' defaults, before anything connects: an
 * argument error names its field.
 */
export function resolveProjectionRunnerOptions(
  db: Db,
  handler: Projection<KafkaEntry>,
  options: KafkaProjectionRunnerOptions,
): ResolvedProjectionRunnerOptions {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('options', 'an object with name and topic', options);
  const resolved = resolveOptions({
    ...(options.brokers === undefined ? {} : { brokers: options.brokers }),
    ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
    ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  if (typeof options.name !== 'string' || !projectionName.test(options.name))
    throw new InvalidArgumentError('name', 'a projection name of [A-Za-z0-9_.:-], 1-200 chars', options.name);
  assertTopic('topic', options.topic);
  if (typeof handler?.apply !== 'function' || typeof handler.reset !== 'function')
    throw new InvalidArgumentError('handler', 'a Projection with apply() and reset()', handler);
  if (typeof db?.transaction !== 'function') throw new InvalidArgumentError('db', 'a keel Db', db);
  const batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
  // 0 is a broker's setting (a fetch that returns at once), not a runner's: it would spin.
  const maxWaitMs = positiveInteger('maxWaitMs', resolved.maxWaitMs);
  const pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
  const retryDelayMs = positiveInteger('retryDelayMs', options.retryDelayMs ?? 1000);
  const limitMs = options.staleLeaderLimitMs ?? staleLeaderLimitMs;
  // 0 is meaningful (no quiet retries, as before there were any); a fraction or Infinity is a mistake.
  if (!Number.isSafeInteger(limitMs) || limitMs < 0)
    throw new InvalidArgumentError('staleLeaderLimitMs', 'an integer >= 0 (milliseconds)', limitMs);
  const onTrimmed = options.onTrimmed ?? 'throw';
  if (onTrimmed !== 'throw' && onTrimmed !== 'resume')
    throw new InvalidArgumentError('onTrimmed', "'throw' or 'resume'", options.onTrimmed);
  const onRecreated = options.onRecreated ?? 'throw';
  if (onRecreated !== 'throw' && onRecreated !== 'restart')
    throw new InvalidArgumentError('onRecreated', "'throw' or 'restart'", options.onRecreated);
  const silentMs = positiveInteger('silentMs', options.silentMs ?? defaultSilentMs + maxWaitMs);
  return {
    name: options.name,
    topic: options.topic,
    client: { clientId: resolved.clientId, brokers: resolved.brokers },
    clock: resolved.clock,
    batchSize,
    maxWaitMs,
    pollIntervalMs,
    retryDelayMs,
    staleLeaderLimitMs: limitMs,
    onTrimmed,
    onRecreated,
    silentMs,
  };
}
