import type { Db, Queryable } from '../../../db/db.ts';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import { ServiceBase } from '../../../service/index.ts';
import type { Clock } from '../../../time/index.ts';
import { ConsumerWakeup } from '../../consumer-wakeup.ts';
import type { Projection } from '../../projection.ts';
import { appliedRanges, nextOffsets, type AppliedRange } from './batch-offsets.ts';
import { assertTopic, resolveOptions } from './kafka-options.ts';
import { resumePlan, type SkippedRecords } from './offset-out-of-range.ts';
import { TopicFetcher, type KafkaEntry, type PartitionRange } from './topic-fetcher.ts';

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
  /** Records from `next` to `end` (when `'trimmed'`, the deleted ones too: they were never applied). */
  lag: number;
  /**
   * `next` against what the partition holds: `'trimmed'` below `start` (records were deleted
   * before the projection applied them: the runner fails with `KafkaPartitionTrimmedError` until
   * a rebuild, or resumes at `start` with `onTrimmed: 'resume'`); `'past-end'` beyond `end` (the
   * topic is not the one the model was built from: `KafkaOffsetPastEndError` until a rebuild);
   * else `'in-range'`.
   */
  state: 'in-range' | 'trimmed' | 'past-end';
}

const projectionName = /^[A-Za-z0-9_.:-]{1,200}$/;

function positiveInteger(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}

/** Locks the projection's row, creating it: every batch and every rebuild takes it first. */
const lockProjection = `INSERT INTO keel_kafka_projections AS p (projection, topic) VALUES ($1, $2)
  ON CONFLICT (projection, topic) DO UPDATE SET rebuilt_at = p.rebuilt_at`;

const readOffsets = `SELECT partition, next_offset::text AS next FROM keel_kafka_projection_offsets
  WHERE projection = $1 AND topic = $2`;

const storeOffsets = `INSERT INTO keel_kafka_projection_offsets (projection, topic, partition, next_offset)
  SELECT $1, $2, (e.doc->>'partition')::integer, (e.doc->>'next')::bigint
  FROM jsonb_array_elements($3::jsonb) AS e(doc)
  ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()`;

/** What one look at the topic came to. */
type Look = { kind: 'no-topic' } | { kind: 'looked'; applied: number; stale: boolean };

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
 * Records deleted from a partition (retention, DeleteRecords) past the stored offset stop the
 * projection with `KafkaPartitionTrimmedError` (`KEEL_STREAM_TRIMMED`) `error` events naming the
 * partition and both offsets, unless `onTrimmed: 'resume'`; a stored offset past the partition's
 * end (the topic recreated) stops it with `KafkaOffsetPastEndError`. Kafka answers both with
 * OFFSET_OUT_OF_RANGE; the runner tells them apart by asking for the partitions' offsets (ListOffsets).
 * `rebuild()` replays what the topic holds.
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
    const { rows } = await queryable.query<{ partition: number; next: string }>(readOffsets, [
      this.projection,
      this.topic,
    ]);
    return new Map(rows.map((row) => [Number(row.partition), BigInt(row.next)]));
  }

  /** Each partition's first retained offset and end as Kafka has them now; none while the topic does not exist. */
  partitions(): Promise<PartitionRange[]> {
    return this.#withFetcher((fetcher) => fetcher.ranges());
  }

  /** How far each partition is applied, and what is left. */
  async progress(): Promise<PartitionProgress[]> {
    // Offsets first: the ends read after them are never behind them.
    const stored = await this.position();
    const ranges = await this.partitions();
    return ranges.map(({ partition, start, end }) => {
      const next = stored.get(partition) ?? start;
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
      await tx.query(lockProjection, [this.projection, this.topic]);
      await this.#handler.reset(tx);
      await tx.query('DELETE FROM keel_kafka_projection_offsets WHERE projection = $1 AND topic = $2', [
        this.projection,
        this.topic,
      ]);
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
   * `stale`: another runner (or a rebuild) moved the offsets meanwhile; what was fetched is dropped.
   */
  async #look(fetcher: TopicFetcher, maxWaitMs: number): Promise<Look> {
    this.#during = 'fetch';
    const count = await fetcher.partitionCount();
    if (count === undefined) return { kind: 'no-topic' };
    const stored = await this.position();
    let from = new Map<number, bigint>();
    for (let partition = 0; partition < count; partition++) {
      let offset = stored.get(partition);
      if (offset === undefined) {
        if (this.#earliest === undefined || this.#earliest.length < count)
          this.#earliest = (await fetcher.ranges()).map((range) => range.start);
        offset = this.#earliest[partition] ?? 0n;
      }
      from.set(partition, offset);
    }
    let outcome = await fetcher.fetch(from, maxWaitMs);
    let skipped = new Map<number, SkippedRecords>();
    if (outcome.kind === 'out-of-range') {
      const plan = resumePlan(this.topic, from, stored, outcome.ranges, this.#onTrimmed, outcome.cause);
      this.#earliest = outcome.ranges.map((range) => range.start);
      from = plan.from;
      skipped = new Map(plan.skipped.map((skip) => [skip.partition, skip]));
      outcome = await fetcher.fetch(from, maxWaitMs);
      // Deleted past the first retained offset again meanwhile: the next look starts over.
      if (outcome.kind === 'out-of-range') return { kind: 'looked', applied: 0, stale: true };
    }
    const fetched = outcome.partitions;
    this.#during = 'apply';
    const entries = fetched.flatMap((part) => part.entries);
    let applied = 0;
    for (let at = 0; at < entries.length && !this.#stopping; at += this.#batchSize) {
      const batch = entries.slice(at, at + this.#batchSize);
      if (!(await this.#applyBatch(batch, nextOffsets(batch, fetched), stored, skipped)))
        return { kind: 'looked', applied, stale: true };
      applied += batch.length;
    }
    // Partitions where the fetch found markers only, and those resumed where it found nothing:
    // their offset moves on without a batch.
    const passed = new Map(
      fetched.filter((part) => part.entries.length === 0).map((p) => [p.partition, p.next]),
    );
    for (const { partition, to } of skipped.values()) {
      if (!fetched.some((part) => part.partition === partition)) passed.set(partition, to);
    }
    if (passed.size > 0 && !this.#stopping && !(await this.#applyBatch([], passed, stored, skipped)))
      return { kind: 'looked', applied, stale: true };
    return { kind: 'looked', applied, stale: false };
  }

  /**
   * Applies `batch` (none: only moves offsets) and stores `next` for its partitions, in one
   * transaction, if each of them still has the stored offset `basis` says (absent: none
   * stored); moves `basis` on. Reports (and takes out of `skipped`) the skips this stored.
   */
  async #applyBatch(
    batch: readonly KafkaEntry[],
    next: ReadonlyMap<number, bigint>,
    basis: Map<number, bigint>,
    skipped: Map<number, SkippedRecords>,
  ): Promise<boolean> {
    const committed = await this.#db.transaction(async (tx) => {
      await tx.query(lockProjection, [this.projection, this.topic]);
      const now = await this.position(tx);
      for (const partition of next.keys()) {
        if (now.get(partition) !== basis.get(partition)) return false;
      }
      if (batch.length > 0) await this.#handler.apply(batch, tx);
      // Past the drain deadline the batch is handed back: it rolls back and is applied at the next start.
      this.#drain?.throwIfAborted();
      const offsets = [...next].map(([partition, offset]) => ({ partition, next: String(offset) }));
      await tx.query(storeOffsets, [this.projection, this.topic, JSON.stringify(offsets)]);
      return true;
    });
    if (!committed) return false;
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
