import type { Db, Queryable } from '../../../db/db.ts';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import { ServiceBase } from '../../../service/index.ts';
import type { Clock } from '../../../time/index.ts';
import { ConsumerWakeup } from '../../consumer-wakeup.ts';
import type { Projection } from '../../projection.ts';
import { appliedRanges, nextOffsets, type AppliedRange } from './batch-offsets.ts';
import { assertTopic, resolveOptions } from './kafka-options.ts';
import { resumePlan, type SkippedRecords } from './offset-out-of-range.ts';
import {
  adoptTopicId,
  dropOffsets,
  lockProjection,
  readStored,
  storeOffsets,
  type ProjectionKey,
} from './projection-offsets.ts';
import { TopicFetcher, type KafkaEntry, type PartitionRange } from './topic-fetcher.ts';
import {
  foreignTopic,
  KafkaTopicRecreatedError,
  type StoredOffset,
  type TopicRestart,
} from './topic-incarnation.ts';

/** A read model built from a Kafka topic: `Projection` over the topic's records. */
export type KafkaProjection = Projection<KafkaEntry>;

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
}

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

/** How far a projection has applied one partition. */
export interface PartitionProgress {
  partition: number;
  /** The offset it applies next: the stored one, else the partition's first retained record. */
  next: bigint;
  /** The partition's first retained offset. */
  start: bigint;
  /** The offset the partition's next record takes. */
  end: bigint;
  /**
   * Records from `next` to `end` (when `'trimmed'`, the deleted ones too: they were never
   * applied; when `'recreated'`, every record from `start`: none of the new topic's were).
   */
  lag: number;
  /**
   * `next` against what the partition holds: `'recreated'` when `next` is of another topic of
   * this name (the topic id stored with it is not the topic's: deleted and created again; the
   * runner fails with `KafkaTopicRecreatedError` until a rebuild, or starts the new topic at its
   * earliest records with `onRecreated: 'restart'`); else `'trimmed'` below `start` (records were
   * deleted before the projection applied them: `KafkaPartitionTrimmedError` until a rebuild, or
   * resumes at `start` with `onTrimmed: 'resume'`); `'past-end'` beyond `end` (the topic holds
   * fewer records than were applied: `KafkaOffsetPastEndError` until a rebuild); else `'in-range'`.
   */
  state: 'in-range' | 'trimmed' | 'past-end' | 'recreated';
}

const projectionName = /^[A-Za-z0-9_.:-]{1,200}$/;

function positiveInteger(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}

/** What one look at the topic came to. */
type Look = { kind: 'no-topic' } | { kind: 'looked'; applied: number; stale: boolean };

/** What the batches of one look share, moved on by each commit. */
interface LookBatches {
  /** The stored offsets the next batch applies only from (absent: none stored). */
  readonly basis: Map<number, bigint>;
  /** The topic the fetched records are of. */
  readonly topicId: string | null;
  /** Trimmed partitions resumed: stored (and reported) by the batch that takes their partition on. */
  readonly skipped: Map<number, SkippedRecords>;
  /** A restart on a recreated topic the next batch stores, with the rows it found (`seen`). */
  restart: (TopicRestart & { seen: ReadonlyMap<number, StoredOffset> }) | undefined;
}

/**
 * Runs a `Projection` over every partition of a Kafka topic: fetches records from the offsets
 * stored in the database and applies each batch in one transaction with the update of those
 * offsets (`keel_kafka_projection_offsets`). A read model in the same database therefore sees
 * each record once: a crash or a throw before the commit rolls the batch and its offsets back
 * together, and the batch is fetched again from the stored offsets; nothing applied is applied
 * again and nothing is skipped. Where nothing is stored a partition starts at its earliest
 * retained record. Kafka's committed offsets are never read or written.
 *
 * Records are read committed: an aborted transaction's records never reach `apply`, and the
 * offsets move past transaction markers. Duplicates in the topic are the projection's business:
 * a publisher that retried writes the same envelope at two offsets, and both reach `apply`
 * (deduplicate on `envelope.id`, or apply idempotently).
 *
 * Partitions: one runner reads all of them, by manual assignment (plain fetches to each
 * partition's leader), with no consumer group, so no rebalance ever moves a partition from under
 * a batch. Partitions added to the topic are found when the client's metadata is refreshed (a
 * failed fetch, or its age). Several runners of one projection (every worker process runs one)
 * are still safe, only not faster: each batch locks the projection's row and applies only if
 * the offsets it fetched from are still the stored ones, else drops what it fetched and reads
 * again.
 *
 * Each stored offset carries the id of the topic it is of (KIP-516: a UUID per topic, another
 * when a topic is deleted and created under the same name). Offsets of another topic than the
 * one of that name now stop the projection with `KafkaTopicRecreatedError`
 * (`KEEL_STREAM_REPLACED`), whether the new topic holds fewer records than they say or more,
 * unless `onRecreated: 'restart'`. The check costs no round trip: the id comes from the metadata
 * the client caches anyway (refreshed every 5 s and after a failure), compared at every look
 * (the first at the start) and in each batch's transaction with the id of the topic its records
 * were fetched from; Kafka refuses a fetch by an id it no longer knows, so a batch never stores
 * another topic's offsets under the old id.
 *
 * Records deleted from a partition (retention, DeleteRecords) past the stored offset stop the
 * projection with `KafkaPartitionTrimmedError` (`KEEL_STREAM_TRIMMED`) `error` events naming the
 * partition and both offsets, unless `onTrimmed: 'resume'`; a stored offset past the partition's
 * end of the same topic (records lost, or an offset stored before topic ids were) stops it with
 * `KafkaOffsetPastEndError`. Kafka answers both with OFFSET_OUT_OF_RANGE; the runner tells them
 * apart by asking for the partitions' offsets (ListOffsets). `rebuild()` replays what the topic
 * holds.
 *
 * Lifecycle: `start()` begins (a missing topic is looked for every `pollIntervalMs`, Kafka being
 * down is reported as `error` events and retried, neither fails the start); `stop()` lets the
 * batch in flight commit, and once the drain deadline passes rolls it back instead (it is
 * applied again at the next start). `catchUp()`, `rebuild()`, `position()` and `lag()` work
 * without `start()`, for a command line; without it each opens a connection of its own.
 */
export class KafkaProjectionRunner extends ServiceBase<KafkaProjectionRunnerEvents> {
  readonly projection: string;
  readonly topic: string;
  readonly #db: Db;
  readonly #handler: KafkaProjection;
  readonly #settings: { clientId: string; brokers: string[] };
  readonly #batchSize: number;
  readonly #maxWaitMs: number;
  readonly #pollIntervalMs: number;
  readonly #retryDelayMs: number;
  readonly #onTrimmed: 'throw' | 'resume';
  readonly #onRecreated: 'throw' | 'restart';
  readonly #key: ProjectionKey;
  readonly #wakeup: ConsumerWakeup;
  #fetcher: TopicFetcher | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #drain: AbortSignal | undefined;
  /** What the loop was doing when it failed, for `error` events. */
  #during: 'fetch' | 'apply' = 'fetch';
  /** Each partition's first retained offset, for partitions with no stored offset; dropped after a failure. */
  #earliest: bigint[] | undefined;

  constructor(db: Db, handler: KafkaProjection, options: KafkaProjectionRunnerOptions) {
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('options', 'an object with name and topic', options);
    const resolved = resolveOptions({
      ...(options.brokers === undefined ? {} : { brokers: options.brokers }),
      ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
      ...(options.maxWaitMs === undefined ? {} : { maxWaitMs: options.maxWaitMs }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    });
    super(`kafka projection ${String(options.name)}`, resolved.clock);
    if (typeof options.name !== 'string' || !projectionName.test(options.name))
      throw new InvalidArgumentError(
        'name',
        'a projection name of [A-Za-z0-9_.:-], 1-200 chars',
        options.name,
      );
    assertTopic('topic', options.topic);
    if (typeof handler?.apply !== 'function' || typeof handler.reset !== 'function')
      throw new InvalidArgumentError('handler', 'a Projection with apply() and reset()', handler);
    if (typeof db?.transaction !== 'function') throw new InvalidArgumentError('db', 'a keel Db', db);
    this.projection = options.name;
    this.topic = options.topic;
    this.#db = db;
    this.#handler = handler;
    this.#settings = { clientId: resolved.clientId, brokers: resolved.brokers };
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
    // 0 is a broker's setting (a fetch that returns at once), not a runner's: it would spin.
    this.#maxWaitMs = positiveInteger('maxWaitMs', resolved.maxWaitMs);
    this.#pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.#retryDelayMs = positiveInteger('retryDelayMs', options.retryDelayMs ?? 1000);
    this.#onTrimmed = options.onTrimmed ?? 'throw';
    if (this.#onTrimmed !== 'throw' && this.#onTrimmed !== 'resume')
      throw new InvalidArgumentError('onTrimmed', "'throw' or 'resume'", options.onTrimmed);
    this.#onRecreated = options.onRecreated ?? 'throw';
    if (this.#onRecreated !== 'throw' && this.#onRecreated !== 'restart')
      throw new InvalidArgumentError('onRecreated', "'throw' or 'restart'", options.onRecreated);
    this.#key = { projection: this.projection, topic: this.topic };
    this.#wakeup = new ConsumerWakeup(this.clock);
  }

  protected override async onStart(): Promise<void> {
    this.#fetcher = new TopicFetcher(this.topic, this.#settings);
    this.#loop = this.#run(this.#fetcher);
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#drain = drain;
    this.#wakeup.stop();
    const loop = this.#loop ?? Promise.resolve();
    // A fetch against a Kafka that is down can wait on the client's timeouts: past the drain
    // deadline, closing the client ends it (a batch in flight rolls back when its handler returns).
    const deadline = new Promise<void>((resolve) => drain.addEventListener('abort', () => resolve()));
    await Promise.race([loop, deadline]);
    await this.#fetcher?.close();
    await loop;
  }

  /** The stored offsets, per partition: the next record each applies. Partitions not begun are absent. */
  async position(queryable: Queryable = this.#db): Promise<Map<number, bigint>> {
    return offsetsOf(await readStored(queryable, this.#key));
  }

  /** Each partition's first retained offset and end as Kafka has them now; none while the topic does not exist. */
  partitions(): Promise<PartitionRange[]> {
    return this.#withFetcher((fetcher) => fetcher.ranges());
  }

  /** How far each partition is applied, and what is left. */
  async progress(): Promise<PartitionProgress[]> {
    // Offsets first: the ends read after them are never behind them.
    const stored = await readStored(this.#db, this.#key);
    const { topicId, ranges } = await this.#withFetcher(async (fetcher) => {
      let topic = await fetcher.current();
      // The client's metadata may be older than an id another runner stored: ask Kafka before saying so.
      if (topic !== undefined && foreignTopic(stored, topic.id) !== undefined)
        topic = await fetcher.current(true);
      return { topicId: topic?.id ?? null, ranges: await fetcher.ranges() };
    });
    const recreated = new Set(foreignTopic(stored, topicId)?.partitions);
    return ranges.map(({ partition, start, end }): PartitionProgress => {
      const next = stored.get(partition)?.next ?? start;
      if (recreated.has(partition))
        return { partition, next, start, end, lag: Number(end - start), state: 'recreated' };
      const state = next < start ? 'trimmed' : next > end ? 'past-end' : 'in-range';
      return { partition, next, start, end, lag: end > next ? Number(end - next) : 0, state };
    });
  }

  /** Records in the topic not yet applied, over every partition. */
  async lag(): Promise<number> {
    return (await this.progress()).reduce((sum, partition) => sum + partition.lag, 0);
  }

  /**
   * Applies batches until a fetch finds nothing more (a fetch that does not wait); returns how
   * many records it applied. Safe beside a running runner of the same projection. Not on a
   * runner that was stopped (`KEEL_SERVICE_STATE`): its batches would be handed back.
   */
  catchUp(): Promise<number> {
    if (this.#stopping)
      return Promise.reject(
        new KeelError('KEEL_SERVICE_STATE', `${this.name} cannot catch up: it is ${this.state}`),
      );
    return this.#withFetcher(async (fetcher) => {
      let total = 0;
      for (;;) {
        const look = await this.#look(fetcher, 0);
        if (look.kind === 'no-topic') return total;
        total += look.applied;
        if (look.applied === 0 && !look.stale) return total;
      }
    });
  }

  /**
   * Empties the read model (`Projection.reset`) and deletes the stored offsets in one
   * transaction; a started runner then replays the topic from its earliest records. A batch in
   * flight (here or in another process) commits before it or is dropped after it, never lands
   * on the emptied model: both lock the projection's row, and a batch applies only from the
   * offsets it fetched from.
   */
  async rebuild(): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await lockProjection(tx, this.#key);
      await this.#handler.reset(tx);
      await dropOffsets(tx, this.#key);
      await tx.query(
        'UPDATE keel_kafka_projections SET rebuilt_at = now() WHERE projection = $1 AND topic = $2',
        [this.projection, this.topic],
      );
    });
    this.#earliest = undefined;
    this.#wakeup.wake();
  }

  async #run(fetcher: TopicFetcher): Promise<void> {
    while (!this.#stopping) {
      this.#wakeup.looking();
      let look: Look;
      try {
        look = await this.#look(fetcher, this.#maxWaitMs);
      } catch (error) {
        if (this.#stopping) break;
        this.#earliest = undefined;
        this.events.emit('error', { error, during: this.#during });
        await this.#wakeup.pause(this.#retryDelayMs);
        continue;
      }
      // A fetch that found records returns at once; one that found none has already waited on Kafka.
      if (look.kind === 'no-topic') await this.#wakeup.pause(this.#pollIntervalMs);
    }
  }

  /**
   * One fetch from the stored offsets, then its records in batches, each in its own transaction.
   * `stale`: another runner (or a rebuild) moved the offsets meanwhile, or the topic's id changed
   * under the fetch; what was fetched is dropped.
   */
  async #look(fetcher: TopicFetcher, maxWaitMs: number): Promise<Look> {
    this.#during = 'fetch';
    let topic = await fetcher.current();
    if (topic === undefined) return { kind: 'no-topic' };
    const stored = await readStored(this.#db, this.#key);
    // The client's metadata may be older than an id another runner stored: ask Kafka before deciding.
    if (foreignTopic(stored, topic.id) !== undefined) {
      topic = await fetcher.current(true);
      if (topic === undefined) return { kind: 'no-topic' };
    }
    const restart = this.#restartOrThrow(stored, topic.id);
    // Restarting, the old topic's offsets count for nothing: each partition from its first record.
    const positions = restart === undefined ? offsetsOf(stored) : new Map<number, bigint>();
    if (restart !== undefined) this.#earliest = undefined;
    let from = new Map<number, bigint>();
    for (let partition = 0; partition < topic.partitions; partition++) {
      let offset = positions.get(partition);
      if (offset === undefined) {
        if (this.#earliest === undefined || this.#earliest.length < topic.partitions)
          this.#earliest = (await fetcher.ranges()).map((range) => range.start);
        offset = this.#earliest[partition] ?? 0n;
      }
      from.set(partition, offset);
    }
    let outcome = await fetcher.fetch(from, maxWaitMs);
    let skipped = new Map<number, SkippedRecords>();
    if (outcome.kind === 'out-of-range') {
      const plan = resumePlan(this.topic, from, positions, outcome.ranges, this.#onTrimmed, outcome.cause);
      this.#earliest = outcome.ranges.map((range) => range.start);
      from = plan.from;
      skipped = new Map(plan.skipped.map((skip) => [skip.partition, skip]));
      outcome = await fetcher.fetch(from, maxWaitMs);
    }
    // The topic was deleted under the fetch (perhaps created again), or records were deleted past
    // the first retained offset again meanwhile: the next look starts over, asking Kafka.
    if (outcome.kind !== 'fetched') {
      this.#earliest = undefined;
      return { kind: 'looked', applied: 0, stale: true };
    }
    const fetched = outcome.partitions;
    const batches: LookBatches = { basis: positions, topicId: outcome.topicId, skipped, restart };
    this.#during = 'apply';
    const entries = fetched.flatMap((part) => part.entries);
    let applied = 0;
    for (let at = 0; at < entries.length && !this.#stopping; at += this.#batchSize) {
      const batch = entries.slice(at, at + this.#batchSize);
      if (!(await this.#applyBatch(batch, nextOffsets(batch, fetched), batches)))
        return { kind: 'looked', applied, stale: true };
      applied += batch.length;
    }
    // Partitions where the fetch found markers only, and those resumed where it found nothing:
    // their offset moves on without a batch; so does a restart on a topic with nothing to apply.
    const passed = new Map(
      fetched.filter((part) => part.entries.length === 0).map((p) => [p.partition, p.next]),
    );
    for (const { partition, to } of skipped.values()) {
      if (!fetched.some((part) => part.partition === partition)) passed.set(partition, to);
    }
    const moves = passed.size > 0 || batches.restart !== undefined;
    if (moves && !this.#stopping && !(await this.#applyBatch([], passed, batches)))
      return { kind: 'looked', applied, stale: true };
    return { kind: 'looked', applied, stale: false };
  }

  /**
   * Stored offsets of another topic than `topicId`: throws `KafkaTopicRecreatedError`, or with
   * `onRecreated: 'restart'` says what the restart drops.
   */
  #restartOrThrow(stored: ReadonlyMap<number, StoredOffset>, topicId: string | null): LookBatches['restart'] {
    const foreign = foreignTopic(stored, topicId);
    if (foreign === undefined || topicId === null) return undefined;
    if (this.#onRecreated === 'throw')
      throw new KafkaTopicRecreatedError(this.topic, foreign.topicId, topicId, foreign.partitions);
    const dropped = [...stored].map(([partition, { next }]) => ({ partition, next }));
    return { storedTopicId: foreign.topicId, topicId, dropped, seen: stored };
  }

  /**
   * Applies `batch` (none: only moves offsets) and stores `next` for its partitions, of the
   * fetched topic, in one transaction, if each of them still has the stored offset `basis` says
   * (absent: none stored) and no stored offset is of another topic (a restart: if the stored
   * offsets are still those it found, it drops them first). Moves `basis` on. Reports the restart
   * and the skips (taking them out) this stored.
   */
  async #applyBatch(
    batch: readonly KafkaEntry[],
    next: ReadonlyMap<number, bigint>,
    batches: LookBatches,
  ): Promise<boolean> {
    const { basis, topicId, skipped, restart } = batches;
    const committed = await this.#db.transaction(async (tx) => {
      await lockProjection(tx, this.#key);
      const now = await readStored(tx, this.#key);
      if (restart !== undefined) {
        if (topicId !== restart.topicId || !sameStored(now, restart.seen)) return false;
        await dropOffsets(tx, this.#key);
      } else {
        for (const partition of next.keys()) {
          if (now.get(partition)?.next !== basis.get(partition)) return false;
        }
        // Records of another topic than the stored offsets' (recreated under the fetch): the
        // next look compares the ids afresh, and fails or restarts.
        if (foreignTopic(now, topicId) !== undefined) return false;
        if (topicId !== null && [...now.values()].some((offset) => offset.topicId === null))
          await adoptTopicId(tx, this.#key, topicId);
      }
      if (batch.length > 0) await this.#handler.apply(batch, tx);
      // Past the drain deadline the batch is handed back: it rolls back and is applied at the next start.
      this.#drain?.throwIfAborted();
      await storeOffsets(tx, this.#key, next, topicId);
      return true;
    });
    if (!committed) return false;
    if (restart !== undefined) {
      batches.restart = undefined;
      basis.clear();
      const { seen: _seen, ...reported } = restart;
      this.events.emit('restarted', reported);
    }
    for (const [partition, offset] of next) {
      basis.set(partition, offset);
      const skip = skipped.get(partition);
      if (skip === undefined) continue;
      skipped.delete(partition);
      this.events.emit('skipped', skip);
    }
    if (batch.length > 0)
      this.events.emit('applied', { count: batch.length, partitions: appliedRanges(batch) });
    return true;
  }

  async #withFetcher<T>(work: (fetcher: TopicFetcher) => Promise<T>): Promise<T> {
    if (this.#fetcher !== undefined && this.state === 'running') return work(this.#fetcher);
    const fetcher = new TopicFetcher(this.topic, this.#settings);
    try {
      return await work(fetcher);
    } finally {
      await fetcher.close();
    }
  }
}

/** The stored offsets without their topic ids. */
function offsetsOf(stored: ReadonlyMap<number, StoredOffset>): Map<number, bigint> {
  return new Map([...stored].map(([partition, { next }]) => [partition, next]));
}

/** Whether two reads of the stored offsets found the same rows. */
function sameStored(a: ReadonlyMap<number, StoredOffset>, b: ReadonlyMap<number, StoredOffset>): boolean {
  if (a.size !== b.size) return false;
  for (const [partition, offset] of a) {
    const other = b.get(partition);
    if (other?.next !== offset.next || other.topicId !== offset.topicId) return false;
  }
  return true;
}
