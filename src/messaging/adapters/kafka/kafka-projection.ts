// KafkaProjectionRunner: its lifecycle and its operations. What it does at each look (fetch,
// then batches) is kafka-projection-look.ts, built of the check of the stored offsets' topic
// (kafka-projection-recreation.ts), the fetch that resolves trimmed partitions
// (kafka-projection-fetch.ts) and the batch transaction (kafka-projection-batch.ts); what
// `health()` keeps of the loop's looks is kafka-projection-health.ts.
import type { Db, Queryable } from '../../../db/db.ts';
import { KeelError } from '../../../errors/index.ts';
import {
  ServiceBase,
  type ReportsHealth,
  type ServiceHealth,
  type StopOptions,
} from '../../../service/index.ts';
import { ConsumerWakeup } from '../../consumer-wakeup.ts';
import type { Projection } from '../../projection.ts';
import { catchUpStopped } from '../../catch-up-stopped.ts';
import { OneShotCalls } from './kafka-projection-calls.ts';
import type { KafkaProjectionRunnerEvents } from './kafka-projection-events.ts';
import { FirstRetainedOffsets } from './kafka-projection-fetch.ts';
import { LoopHealth, unrecordedCalls } from './kafka-projection-health.ts';
import { look, type Look, type LookContext } from './kafka-projection-look.ts';
import {
  resolveProjectionRunnerOptions,
  type KafkaProjectionRunnerOptions,
} from './kafka-projection-options.ts';
import { readProgress, type PartitionProgress } from './kafka-projection-progress.ts';
import {
  dropOffsets,
  lockProjection,
  offsetsOf,
  readStored,
  type ProjectionKey,
} from './projection-offsets.ts';
import { StaleLeaderRun } from './stale-leader.ts';
import { StaleLeaderRetry } from './stale-leader-retry.ts';
import { TopicFetcher, type KafkaEntry, type PartitionRange } from './topic-fetcher.ts';
import { untilAborted } from '../../../service/until-aborted.ts';

export type { KafkaProjectionRunnerEvents } from './kafka-projection-events.ts';
export type { KafkaProjectionRunnerOptions } from './kafka-projection-options.ts';
export type { PartitionProgress } from './kafka-projection-progress.ts';

/** A read model built from a Kafka topic: `Projection` over the topic's records. */
export type KafkaProjection = Projection<KafkaEntry>;

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
 * another topic's offsets under the old id. Offsets stored before topic ids were (migration
 * `keel_kafka_projection_0002_topic_id`) are refused the same way when one is of a partition the
 * topic does not have (Kafka never removes partitions), and otherwise take the topic's id at the
 * first look that fetches from them; a topic recreated before that look, with as many partitions
 * and grown past them, cannot be told from the old one (`otherTopic` in topic-incarnation.ts).
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
 * down is reported as `error` events and retried, neither fails the start); a look that fails
 * because a partition's leader moved or is being elected (NOT_LEADER_OR_FOLLOWER and the like,
 * `staleLeaderAnswers`) is retried after `retryDelayMs` on fresh metadata without an `error`
 * event, until such failures have gone on for `staleLeaderLimitMs` (default 30 s), and so is a
 * fetch refused as out of range (OFFSET_OUT_OF_RANGE, or an answer the client cannot read) for
 * offsets the partitions' ranges show valid: a broker behind a partition's switch-over
 * (`KafkaStaleOutOfRangeError`). `stop()` lets the batch in flight commit, and once the drain
 * deadline passes rolls it back instead (it is applied again at the next start). `catchUp()`,
 * `rebuild()`, `position()` and `lag()` work without `start()`, for a command line; without it
 * each opens a connection of its own.
 *
 * The one-shot calls that ask Kafka (`catchUp()`, `partitions()`, `progress()`, `lag()`) ride
 * out a leader moving as the loop does: such a failure is tried again after `retryDelayMs` on
 * fresh metadata, until such failures have gone on for `staleLeaderLimitMs` from the call's
 * first (each call counts its own, apart from the loop's and from other calls'); then the call
 * rejects with the last (`KEEL_BROKER_UNAVAILABLE`, the answers in its `cause`). Any other
 * failure rejects at once. `stop()` (started or not) ends such a wait: the call rejects with
 * `KEEL_SERVICE_STATE`. It ends a `catchUp()` applying batches after the batch in hand (as the
 * loop's); `stop()` resolves once the calls in flight have ended, or past the drain deadline.
 */
export class KafkaProjectionRunner extends ServiceBase<KafkaProjectionRunnerEvents> implements ReportsHealth {
  readonly projection: string;
  readonly topic: string;
  readonly #db: Db;
  readonly #handler: KafkaProjection;
  readonly #client: { clientId: string; brokers: string[] };
  readonly #maxWaitMs: number;
  readonly #pollIntervalMs: number;
  readonly #retryDelayMs: number;
  readonly #staleLeaderLimitMs: number;
  readonly #key: ProjectionKey;
  readonly #wakeup: ConsumerWakeup;
  /** Each partition's first retained offset, for partitions with no stored offset; dropped after a failure. */
  readonly #earliest = new FirstRetainedOffsets();
  /** What every look is given: the settings and this runner's state it reads. */
  readonly #look: LookContext;
  #fetcher: TopicFetcher | undefined;
  #loop: Promise<void> | undefined;
  /** The one-shot calls in flight, which `stop()` ends and waits for, started or not. */
  readonly #calls = new OneShotCalls();
  #stopping = false;
  /**
   * Aborted at the first `stop()`, started or not: the base class calls `onStop` only for a
   * started runner (and `onStopUnstarted` only for one with calls in flight), and a command
   * line's call waiting out a moving leader, or one made after the stop, must end all the same.
   */
  readonly #stopCalled = new AbortController();
  /** Aborts at the drain deadline of `stop()`: the loop's batch, and those of one-shot calls, roll back. */
  #drain: AbortSignal | undefined;
  /** What the loop was doing when it failed, for `error` events. */
  #during: 'fetch' | 'apply' = 'fetch';
  /** The loop's looks failing on a leader that moved or is being elected: retried quietly, for a while. */
  readonly #staleLeader: StaleLeaderRun;
  /** The outcomes of the loop's calls to Kafka and to the database, for `health()`. */
  readonly #health: LoopHealth;

  constructor(db: Db, handler: KafkaProjection, options: KafkaProjectionRunnerOptions) {
    const resolved = resolveProjectionRunnerOptions(db, handler, options);
    super(`kafka projection ${resolved.name}`, resolved.clock);
    this.projection = resolved.name;
    this.topic = resolved.topic;
    this.#db = db;
    this.#handler = handler;
    this.#client = resolved.client;
    this.#maxWaitMs = resolved.maxWaitMs;
    this.#pollIntervalMs = resolved.pollIntervalMs;
    this.#retryDelayMs = resolved.retryDelayMs;
    this.#staleLeaderLimitMs = resolved.staleLeaderLimitMs;
    this.#key = { projection: this.projection, topic: this.topic };
    this.#wakeup = new ConsumerWakeup(this.clock);
    this.#staleLeader = new StaleLeaderRun(this.clock, this.#staleLeaderLimitMs);
    this.#health = new LoopHealth(this.clock, resolved.silentMs, () => this.#during);
    this.#look = {
      db,
      key: this.#key,
      handler,
      batchSize: resolved.batchSize,
      onTrimmed: resolved.onTrimmed,
      onRecreated: resolved.onRecreated,
      earliest: this.#earliest,
      events: this.events,
      calls: this.#health,
      drain: () => this.#drain,
      stopping: () => this.#stopping,
      phase: (during) => void (this.#during = during),
    };
  }

  /**
   * Whether the running loop reaches Kafka and the database, from its own calls (the metadata,
   * the fetches and the offsets' reads asked at each look, each batch's transaction): 'failing'
   * with `dependency` `'broker'` or `'database'` and `during` `'fetch'` or `'apply'`, as its
   * `error` events, while its looks fail on it (`failures` counts the looks), or while one call
   * has gone unanswered for `silentMs` (it hangs); 'ok' again after the next look that goes
   * through. Failures of a leader moving are not failing while the loop rides them out quietly
   * (`staleLeaderLimitMs`), only from the first it reports. Neither a batch whose `apply`
   * throws nor a partition trimmed or a topic recreated past the stored offsets makes it
   * failing: Kafka and the database answered, and the `error` events and `progress()` say what
   * holds the projection. The loop's calls only: not those of `catchUp()`, `rebuild()` or the
   * status reads, whose failures are their callers'. A read of memory.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    this.#fetcher = new TopicFetcher(this.topic, this.#client);
    this.#loop = this.#run(this.#fetcher);
  }

  /**
   * As `Service.stop`, started or not: also ends the one-shot calls in flight (a wait on a moving
   * leader at once, `catchUp()` after the batch in hand), and resolves once they have ended. On
   * a runner never started (a command line's) the drain deadline bounds them as it bounds the
   * loop of a started one (it is 'stopping' meanwhile): past it, the batch in flight rolls back
   * when its `apply` returns.
   */
  override stop(options?: StopOptions): Promise<void> {
    // At the call, not once the base class has waited out a start: a call waiting on a moving
    // leader ends at once, and a catchUp() called after this is refused.
    this.#stopCalled.abort();
    return super.stop(options);
  }

  /** A runner never started has only its one-shot calls to stop. */
  protected override hasWorkInHand(): boolean {
    return this.#calls.inFlight > 0;
  }

  protected override async onStopUnstarted(drain: AbortSignal): Promise<void> {
    this.#drain = drain;
    // Past the drain deadline, closing the calls' own clients ends a fetch waiting on Kafka (a
    // batch in flight rolls back when its handler returns).
    await Promise.race([this.#calls.settled(), untilAborted(drain)]);
    await this.#calls.closeOwn();
    await this.#calls.settled();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#drain = drain;
    this.#wakeup.stop();
    const loop = this.#loop ?? Promise.resolve();
    // A fetch against a Kafka that is down can wait on the client's timeouts: past the drain
    // deadline, closing the client ends it (a batch in flight rolls back when its handler returns).
    // The one-shot calls on the loop's client end before it is closed, each after its batch in hand.
    await Promise.race([Promise.all([loop, this.#calls.settled()]), untilAborted(drain)]);
    await this.#calls.closeOwn();
    await this.#fetcher?.close();
    await loop;
    await this.#calls.settled();
  }

  /** The stored offsets, per partition: the next record each applies. Partitions not begun are absent. */
  async position(queryable: Queryable = this.#db): Promise<Map<number, bigint>> {
    return offsetsOf(await readStored(queryable, this.#key));
  }

  /** Each partition's first retained offset and end as Kafka has them now; none while the topic does not exist. */
  partitions(): Promise<PartitionRange[]> {
    const retry = this.#staleLeaderRetry('read its partitions');
    return this.#withFetcher((fetcher) => retry.run(() => fetcher.ranges()));
  }

  /** How far each partition is applied, and what is left. */
  progress(): Promise<PartitionProgress[]> {
    const retry = this.#staleLeaderRetry('read its progress');
    return this.#withFetcher((fetcher) => retry.run(() => readProgress(this.#db, this.#key, fetcher)));
  }

  /** Records in the topic not yet applied, over every partition. */
  async lag(): Promise<number> {
    return (await this.progress()).reduce((sum, partition) => sum + partition.lag, 0);
  }

  /**
   * Applies batches until a fetch finds nothing more (a fetch that does not wait); returns how
   * many records it applied. Safe beside a running runner of the same projection. Not on a
   * runner that was stopped, whether it had started or not (`KEEL_SERVICE_STATE`): its batches
   * would be handed back.
   *
   * `stop()` during it (started or not) ends it after the batch in hand: that batch commits, or
   * past the drain deadline rolls back, and it rejects with `KEEL_SERVICE_STATE`, `details.applied`
   * the records it committed (they stay applied, with their offsets). It rejects rather than
   * resolve with that count because resolving says the topic was caught up: a command line that
   * rebuilds, then reports the model current, must not take a catch-up cut short for one.
   */
  catchUp(): Promise<number> {
    if (this.#stopCalled.signal.aborted)
      return Promise.reject(
        new KeelError('KEEL_SERVICE_STATE', `${this.name} cannot catch up: it is ${this.state}`),
      );
    const retry = this.#staleLeaderRetry('catch up');
    const stopped = this.#stopCalled.signal;
    // Its own phase, not the loop's: a look of this call failing must neither mislabel the loop's
    // `error` events nor be retried as a fetch when its batch failed.
    let during: 'fetch' | 'apply' = 'fetch';
    const context: LookContext = {
      ...this.#look,
      calls: unrecordedCalls,
      phase: (now) => void (during = now),
      // Not the loop's flag, which only onStop sets: a command line's runner is never started.
      stopping: () => stopped.aborted,
    };
    return this.#withFetcher(async (fetcher) => {
      const lookOnce = async (): Promise<Look> => {
        try {
          return await look(context, fetcher, 0);
        } catch (error) {
          // As the loop: after a failure, the first retained offsets are asked of Kafka again.
          this.#earliest.forget();
          throw error;
        }
      };
      let total = 0;
      for (;;) {
        let looked: Look;
        try {
          // A batch that failed is the projection's failure, whatever it says: Kafka did not answer it.
          looked = await retry.run(lookOnce, () => during === 'fetch');
        } catch (error) {
          // Past the drain deadline the batch in hand rolled back, or the client was closed under
          // the fetch: stopped, not failed.
          if (this.#drain?.aborted === true) throw catchUpStopped(this.name, total, 'record(s)', error);
          throw error;
        }
        if (looked.kind === 'no-topic') return total;
        total += looked.applied;
        if (looked.kind === 'looked' && looked.applied === 0 && !looked.stale) return total;
        if (stopped.aborted) throw catchUpStopped(this.name, total, 'record(s)');
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
    this.#earliest.forget();
    this.#wakeup.wake();
  }

  async #run(fetcher: TopicFetcher): Promise<void> {
    while (!this.#stopping) {
      this.#wakeup.looking();
      let looked: Look;
      try {
        looked = await look(this.#look, fetcher, this.#maxWaitMs);
      } catch (error) {
        if (this.#stopping) break;
        this.#earliest.forget();
        // A batch failed: its fetch went through, and the failure is the projection's.
        if (this.#during === 'apply') this.#staleLeader.end();
        // A leader moving or being elected is over in moments: the fetcher asks Kafka for fresh
        // metadata at the next look, which waits as after any failure, and one still stale past
        // the limit is reported (stale-leader.ts).
        const quiet = this.#during === 'fetch' && this.#staleLeader.quiet(error);
        // Only what is reported counts for health(): a leader moving is not failing until then.
        this.#health.lookFailed(error, this.#during, quiet);
        if (!quiet) this.events.emit('error', { error, during: this.#during });
        await this.#wakeup.pause(this.#retryDelayMs);
        continue;
      }
      this.#staleLeader.end();
      this.#health.lookedThrough();
      // A fetch that found records returns at once; one that found none has already waited on Kafka.
      if (looked.kind === 'no-topic') await this.#wakeup.pause(this.#pollIntervalMs);
    }
  }

  /** A one-shot call's retries of stale-leader failures, its own (stale-leader-retry.ts says why). */
  #staleLeaderRetry(action: string): StaleLeaderRetry {
    return new StaleLeaderRetry({
      clock: this.clock,
      retryDelayMs: this.#retryDelayMs,
      limitMs: this.#staleLeaderLimitMs,
      stopped: this.#stopCalled.signal,
      whenStopped: (failure) =>
        new KeelError(
          'KEEL_SERVICE_STATE',
          `${this.name} cannot ${action}: it was stopped while waiting for a partition's leader to be elected`,
          { cause: failure },
        ),
    });
  }

  /** Runs a one-shot call with the loop's client while it runs, else with one of its own. */
  #withFetcher<T>(work: (fetcher: TopicFetcher) => Promise<T>): Promise<T> {
    const shared = this.state === 'running' ? this.#fetcher : undefined;
    return this.#calls.run(shared, () => new TopicFetcher(this.topic, this.#client), work);
  }
}
