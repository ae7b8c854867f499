import type { Db, Unlisten } from '../../../db/db.ts';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import {
  HealthRecord,
  ServiceBase,
  type ReportsHealth,
  type ServiceHealth,
  type StopOptions,
} from '../../../service/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../../../time/index.ts';
import { catchUpStopped } from '../../catch-up-stopped.ts';
import { ConsumerWakeup } from '../../consumer-wakeup.ts';
import { assertQueueName } from './pg-queue.ts';
import { assertStreamName, PgStream, StreamTrimmedError, type StreamEntry } from './pg-stream.ts';
import { ProjectionNotFoundError } from './pg-stream-projection-admin.ts';
import {
  applyBatch,
  type BatchContext,
  type BatchOutcome,
  type PositionMove,
} from './pg-stream-projection-batch.ts';
import { pgStreamChannel } from './pg-stream-schema.ts';
import type { Projection as LogProjection } from '../../projection.ts';

/**
 * A read model built from a stream. Both methods run inside the transaction that also moves the
 * projection's stored position, so a read model in the same database sees each entry once: the
 * batch and the new position commit together, or neither does.
 */
/**
 * A read model built from a `PgStream`: the shared `Projection` shape over its entries, which
 * arrive in position order with no gaps after the stored position. `rebuild()` calls `reset` as
 * it sets the position back to the stream's start (0, or after a trim the position before the
 * first retained entry).
 */
export type Projection = LogProjection<StreamEntry>;

export interface ProjectionRunnerOptions {
  /** The projection's name, its key in `keel_stream_positions`; [A-Za-z0-9_.:-], 1-200 chars. */
  name: string;
  /** The stream it reads. */
  stream: string;
  /** Default the system clock. */
  clock?: Clock;
  /** Entries per transaction. Default 100. */
  batchSize?: number;
  /** How often to look for entries when no NOTIFY arrives (or LISTEN failed). Default 1 000 ms. */
  pollIntervalMs?: number;
  /** How long to wait after a batch failed before trying it again. Default 1 000 ms. */
  retryDelayMs?: number;
  /**
   * What to do when the stream was trimmed past the stored position, so entries this projection
   * never applied are gone: `'throw'` fails each batch with `StreamTrimmedError` (an `error`
   * event, retried every `retryDelayMs`) until someone decides, by `rebuild()` or by this option;
   * `'resume'` moves the position to the first retained entry, emits `skipped`, and applies on
   * from there. Default `'throw'`: a read model silently missing entries is worse than a stopped
   * one. A projection that must never miss entries keeps them with `PgStream.trim`'s
   * `keepUnappliedBy`.
   */
  onTrimmed?: 'throw' | 'resume';
  /**
   * How long without an answer from the database `health()` takes for a statement that hangs.
   * The runner looks at least every `pollIntervalMs` (or `retryDelayMs` after a failed batch),
   * but a batch answers only when it commits, and a runner waits on the position row's lock for
   * another runner's batch: set this above the longest batch your projection applies. Default
   * 30 000 ms (the lease keel's queue and saga runner allow a silent process) plus the longer of
   * `pollIntervalMs` and `retryDelayMs`.
   */
  silentMs?: number;
}

export interface ProjectionRunnerEvents {
  /** A batch committed with the position moved from `from` to `to`. */
  applied: PositionMove;
  /**
   * `onTrimmed: 'resume'`: the stored position was below the stream's first retained entry, and
   * moved from `from` to `to` without applying entries `from + 1` to `to` (trimmed). In the
   * transaction of the batch that follows, so it is reported once it committed.
   */
  skipped: PositionMove;
}

function positiveInteger(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}

// See `ProjectionRunnerOptions.silentMs`.
const defaultSilentMs = 30_000;

/**
 * What the database said about the projection's stream or position (trimmed past it, or the row
 * forgotten), rather than a failure to reach it: a person decides, retrying does not help.
 */
function isAnswer(error: unknown): boolean {
  return error instanceof StreamTrimmedError || error instanceof ProjectionNotFoundError;
}

/** Locks the projection's position row (creating it at 0) and returns the position it holds. */
const lockPosition = `INSERT INTO keel_stream_positions AS p (projection, stream) VALUES ($1, $2)
  ON CONFLICT (projection, stream) DO UPDATE SET position = p.position
  RETURNING position::text`;

const registerPosition = `INSERT INTO keel_stream_positions (projection, stream) VALUES ($1, $2)
  ON CONFLICT (projection, stream) DO NOTHING`;

/**
 * Runs a `Projection` over a `PgStream`: applies batches after the stored position, each in one
 * transaction with the position's update. Wakes on the stream's NOTIFY, and polls.
 *
 * Several runners of one projection (every worker process runs one) are safe: each batch takes
 * the position row's lock first and reads after the position it finds there, so they take turns
 * and never apply an entry twice.
 *
 * After a trim past the stored position, batches fail with `StreamTrimmedError` unless
 * `onTrimmed: 'resume'`; `rebuild()` replays from the first retained entry.
 *
 * The runner stores its position row once, the first time it looks for entries; it never
 * creates it again in a batch. After `PgStream.forgetProjection` deleted it, batches fail with
 * `ProjectionNotFoundError` (`during: 'apply'`) until the runner is stopped, or `rebuild()`
 * stores the row again and starts the projection over.
 *
 * Lifecycle: `start()` LISTENs and begins; `stop()` lets the batch in flight commit, and once the
 * drain deadline passes rolls it back instead, when the projection's `apply` returns (it is
 * applied again at the next start). `catchUp()`, `applyNext()` and `rebuild()` work without
 * `start()`, for a command line; `stop()`, started or not, waits for those in flight (a runner
 * never started is 'stopping' meanwhile) within the drain deadline, and ends a `catchUp()` after
 * the batch in hand (`catchUp()` says how).
 */
export class ProjectionRunner extends ServiceBase<ProjectionRunnerEvents> implements ReportsHealth {
  readonly projection: string;
  readonly stream: string;
  readonly #db: Db;
  readonly #reader: PgStream;
  readonly #handler: Projection;
  readonly #batchSize: number;
  readonly #pollIntervalMs: number;
  readonly #retryDelayMs: number;
  readonly #wakeup: ConsumerWakeup;
  readonly #health: HealthRecord<'database'>;
  /** What each batch is given: the settings and the drain deadline it reads. */
  readonly #batch: BatchContext;
  #registered = false;
  #unlisten: Unlisten | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  /**
   * Aborted at the first `stop()`, started or not: the base class calls `onStop` only for a
   * started runner, and a command line's `catchUp()` must end all the same.
   */
  readonly #stopCalled = new AbortController();
  /** The drain deadline of `stop()`, once called: past it the batch in flight rolls back. */
  #drain: AbortSignal | undefined;
  /** The one-shot calls in flight (`catchUp()`, `applyNext()`, `rebuild()`), which `stop()` waits for. */
  readonly #calls = new Set<Promise<unknown>>();
  #retryTimer: TimerHandle | undefined;
  #endRetry: (() => void) | undefined;

  constructor(db: Db, handler: Projection, options: ProjectionRunnerOptions) {
    super(`projection ${String(options?.name)}`, options?.clock ?? systemClock);
    assertQueueName(options.name, 'name');
    assertStreamName(options.stream);
    if (typeof handler?.apply !== 'function' || typeof handler.reset !== 'function')
      throw new InvalidArgumentError('handler', 'a Projection with apply() and reset()', handler);
    this.projection = options.name;
    this.stream = options.stream;
    this.#db = db;
    this.#reader = new PgStream(db);
    this.#handler = handler;
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
    this.#pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.#retryDelayMs = positiveInteger('retryDelayMs', options.retryDelayMs ?? 1000);
    const onTrimmed = options.onTrimmed ?? 'throw';
    if (onTrimmed !== 'throw' && onTrimmed !== 'resume')
      throw new InvalidArgumentError('onTrimmed', "'throw' or 'resume'", options.onTrimmed);
    this.#wakeup = new ConsumerWakeup(this.clock);
    const silentMs = positiveInteger(
      'silentMs',
      options.silentMs ?? defaultSilentMs + Math.max(this.#pollIntervalMs, this.#retryDelayMs),
    );
    this.#health = new HealthRecord(this.clock, { database: { silentMs } });
    this.#batch = {
      projection: this.projection,
      stream: this.stream,
      reader: this.#reader,
      handler,
      batchSize: this.#batchSize,
      onTrimmed,
      drain: () => this.#drain,
    };
  }

  /**
   * Whether the started runner reaches its database, from the outcome of its loop's own
   * statements (its looks for entries, its batches' transactions, its LISTEN): 'failing', with
   * `dependency` `'database'` and `during` `'apply'` (or `'listen'`), while they fail, or when
   * none has answered for `silentMs` (one hangs); 'ok' again after the loop's next one that
   * succeeds. A batch the projection's `apply` throws from is its problem, not the database's,
   * and so is a stream trimmed past the stored position or a forgotten position row: the
   * database answered, and the `error` events and `lag()` say what holds the projection. The
   * loop's statements only, as the Kafka runner's: not those of `catchUp()`, `applyNext()`,
   * `rebuild()` or the status reads, whose failures are their callers' (a command line's
   * catch-up failing must not fail `/readyz`, nor one that succeeds clear the loop's failure).
   * A read of memory.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    try {
      this.#unlisten = await this.#db.listen(pgStreamChannel, (stream) => {
        // Channels are database-wide: other streams' (and other schemas') appends come here too.
        if (stream === this.stream) this.#wakeup.wake();
      });
      this.#health.succeeded('database');
    } catch (error) {
      // Polling alone still finds every entry, only later; the first look clears this if it can.
      this.#health.failed('database', error, 'listen');
      this.events.emit('error', { error, during: 'listen' });
    }
    this.#loop = this.#run();
  }

  /**
   * As `Service.stop`, started or not: also waits for the one-shot calls in flight, and ends a
   * `catchUp()` after the batch in hand. The drain deadline bounds them as it bounds the loop (a
   * runner never started, a command line's, is 'stopping' meanwhile): past it, the batch in
   * flight rolls back when its `apply` returns.
   */
  override stop(options?: StopOptions): Promise<void> {
    // At the call, not once the base class has waited out a start: a catchUp() called after this
    // is refused, and one in flight begins no further batch.
    this.#stopCalled.abort();
    return super.stop(options);
  }

  /** A runner never started has only its one-shot calls to stop. */
  protected override hasWorkInHand(): boolean {
    return this.#calls.size > 0;
  }

  protected override async onStopUnstarted(drain: AbortSignal): Promise<void> {
    this.#drain = drain;
    await this.#callsSettled();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#drain = drain;
    this.#wakeup.stop();
    if (this.#retryTimer !== undefined) this.clock.clearTimeout(this.#retryTimer);
    this.#endRetry?.();
    // Released now, beside the drain: a stopping loop looks no more, so a NOTIFY is of no use, and
    // after the loop it would outlast the drain deadline behind a batch whose apply ignores it.
    const unlistened = this.#unlisten?.().catch(() => undefined);
    await this.#loop;
    await this.#callsSettled();
    await unlistened;
  }

  /** The position the projection has applied up to (0 before its first batch). */
  async position(): Promise<number> {
    const { rows } = await this.#db.query<{ position: string }>(
      'SELECT position::text FROM keel_stream_positions WHERE projection = $1 AND stream = $2',
      [this.projection, this.stream],
    );
    return Number(rows[0]?.position ?? 0);
  }

  /** Entries appended and not yet applied (trimmed ones included: they were never applied). */
  async lag(): Promise<number> {
    const [head, at] = [await this.#reader.head(this.stream), await this.position()];
    return Math.max(0, head - at);
  }

  /**
   * Applies the next batch after the stored position, in one transaction with the position's
   * update; returns how many entries it applied (0: caught up, or another runner took the batch).
   * A stream trimmed past the stored position rejects with `StreamTrimmedError`, unless
   * `onTrimmed: 'resume'`; a position row forgotten since this runner stored it rejects with
   * `ProjectionNotFoundError`. Past the drain deadline of a `stop()` the batch rolls back, and it
   * rejects with `KEEL_ABORTED`.
   */
  applyNext(): Promise<number> {
    return this.#track(
      this.#applyNext(undefined, undefined).then((applied) => (applied === 'stopped' ? 0 : applied)),
    );
  }

  /**
   * `applyNext()`; 'stopped' when `stopped` aborted before the batch began, with entries left to
   * apply. `health`: where the outcomes of its statements go, the loop's record; undefined for a
   * one-shot call, whose outcome is its caller's.
   */
  async #applyNext(
    stopped: AbortSignal | undefined,
    health: HealthRecord<'database'> | undefined,
  ): Promise<number | 'stopped'> {
    let lag: number;
    try {
      if (!this.#registered) {
        // A committed position row from the first look on, not from the first batch's commit: a
        // trim protecting 'any-projection' sees only committed rows, and would pass over a
        // projection whose first batch is still in flight (it would then fail with
        // StreamTrimmedError, never skip; this keeps it from failing).
        await this.#db.query(registerPosition, [this.projection, this.stream]);
        this.#registered = true;
      }
      // Without a transaction first: an idle projection that polls costs one read, not a write.
      lag = await this.lag();
    } catch (error) {
      health?.failed('database', error, 'apply');
      throw error;
    }
    health?.succeeded('database');
    if (lag === 0) return 0;
    if (stopped?.aborted === true) return 'stopped';
    // Set when the projection's own `apply` threw: the batch failed, the database did not.
    let applyThrew = false;
    let outcome: BatchOutcome | undefined;
    try {
      outcome = await this.#db.transaction((tx) => applyBatch(this.#batch, tx, () => (applyThrew = true)));
    } catch (error) {
      // Handed back at the drain deadline: the database did not fail either.
      const handedBack = this.#drain?.aborted === true;
      if (!applyThrew && !handedBack && !isAnswer(error)) health?.failed('database', error, 'apply');
      throw error;
    }
    health?.succeeded('database');
    if (outcome?.skipped !== undefined) this.events.emit('skipped', outcome.skipped);
    if (outcome?.applied === undefined) return 0;
    this.events.emit('applied', outcome.applied);
    return outcome.applied.count;
  }

  /**
   * Applies batches until none is left; returns how many entries it applied. Not on a runner that
   * was stopped, whether it had started or not (`KEEL_SERVICE_STATE`): its batches would be
   * handed back.
   *
   * `stop()` during it (started or not) ends it after the batch in hand: that batch commits, or
   * past the drain deadline rolls back, and it rejects with `KEEL_SERVICE_STATE`,
   * `details.applied` the entries it committed (they stay applied, with the position). It rejects
   * rather than resolve with that count because resolving says the stream was caught up. A batch
   * that found nothing left still resolves.
   */
  catchUp(): Promise<number> {
    const stopped = this.#stopCalled.signal;
    if (stopped.aborted)
      return Promise.reject(
        new KeelError('KEEL_SERVICE_STATE', `${this.name} cannot catch up: it is ${this.state}`),
      );
    const unit = 'entry(ies)';
    const run = async (): Promise<number> => {
      let total = 0;
      for (;;) {
        let applied: number | 'stopped';
        try {
          applied = await this.#applyNext(stopped, undefined);
        } catch (error) {
          // Past the drain deadline the batch in hand rolled back: stopped, not failed.
          if (this.#drain?.aborted === true) throw catchUpStopped(this.name, total, unit, error);
          throw error;
        }
        if (applied === 0) return total;
        if (applied !== 'stopped') total += applied;
        if (stopped.aborted) throw catchUpStopped(this.name, total, unit);
      }
    };
    return this.#track(run());
  }

  /**
   * Empties the read model (`Projection.reset`) and sets the position back to the stream's start
   * in one transaction: 0, or after a trim the position before the first retained entry, so a
   * started runner then replays what the stream still holds (the trimmed entries are gone for
   * good). A batch another runner has in flight commits first (the position row's lock), so none
   * lands on the emptied model. A forgotten position row is stored again, at that start.
   */
  rebuild(): Promise<void> {
    return this.#track(this.#rebuild());
  }

  async #rebuild(): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await tx.query(lockPosition, [this.projection, this.stream]);
      await this.#handler.reset(tx);
      const { first } = await this.#reader.bounds(this.stream, tx);
      await tx.query(
        'UPDATE keel_stream_positions SET position = $3, updated_at = now() WHERE projection = $1 AND stream = $2',
        [this.projection, this.stream, first - 1],
      );
    });
    this.#wakeup.wake();
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      this.#wakeup.looking();
      let applied: number | 'stopped';
      try {
        applied = await this.#applyNext(this.#stopCalled.signal, this.#health);
      } catch (error) {
        // Its batch handed back at the drain deadline: no failure to report.
        if (this.#drain?.aborted === true) break;
        this.events.emit('error', { error, during: 'apply' });
        await this.#retryPause();
        continue;
      }
      if (applied === 'stopped') break;
      // A full batch means more may wait: look again at once.
      if (applied >= this.#batchSize) continue;
      await this.#wakeup.pause(this.#pollIntervalMs);
    }
  }

  /** Counts `call` in flight until it settles: `stop()` waits for it. */
  #track<T>(call: Promise<T>): Promise<T> {
    this.#calls.add(call);
    const forget = (): void => void this.#calls.delete(call);
    call.then(forget, forget);
    return call;
  }

  /** Resolves once no one-shot call is in flight, those begun meanwhile included. Never rejects. */
  async #callsSettled(): Promise<void> {
    while (this.#calls.size > 0) await Promise.allSettled([...this.#calls]);
  }

  /** Waits `retryDelayMs`, or until stop: appends that come meanwhile must not retry a failing batch hot. */
  #retryPause(): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#endRetry = () => {
        this.#endRetry = undefined;
        this.#retryTimer = undefined;
        resolve();
      };
      this.#retryTimer = this.clock.setTimeout(() => this.#endRetry?.(), this.#retryDelayMs);
    });
  }
}
