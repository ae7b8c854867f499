import type { Db, Tx, Unlisten } from '../../../db/db.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { HealthRecord, ServiceBase, type ReportsHealth, type ServiceHealth } from '../../../service/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../../../time/index.ts';
import { ConsumerWakeup } from '../../consumer-wakeup.ts';
import { assertQueueName } from './pg-queue.ts';
import { assertStreamName, PgStream, StreamTrimmedError, type StreamEntry } from './pg-stream.ts';
import { ProjectionNotFoundError } from './pg-stream-projection-admin.ts';
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
  applied: { from: number; to: number; count: number };
  /**
   * `onTrimmed: 'resume'`: the stored position was below the stream's first retained entry, and
   * moved from `from` to `to` without applying entries `from + 1` to `to` (trimmed). In the
   * transaction of the batch that follows, so it is reported once it committed.
   */
  skipped: { from: number; to: number; count: number };
}

function positiveInteger(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}

/** What a batch's transaction did: entries it passed over after a trim, entries it applied. */
interface BatchOutcome {
  skipped: ProjectionRunnerEvents['skipped'] | undefined;
  applied: ProjectionRunnerEvents['applied'] | undefined;
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

// A batch's lock: never creates the row. The runner stored it before its first batch, so a row
// missing here was forgotten (`PgStream.forgetProjection`) since; creating it again, at 0, would
// replay the stream into the model and undo the forget without anyone knowing.
const lockStoredPosition = `SELECT position::text FROM keel_stream_positions
  WHERE projection = $1 AND stream = $2 FOR UPDATE`;

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
 * Lifecycle: `start()` LISTENs and begins; `stop()` lets the batch in flight commit. `catchUp()`
 * and `rebuild()` work without `start()`, for a command line.
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
  readonly #onTrimmed: 'throw' | 'resume';
  readonly #wakeup: ConsumerWakeup;
  readonly #health: HealthRecord<'database'>;
  #registered = false;
  #unlisten: Unlisten | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
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
    this.#onTrimmed = options.onTrimmed ?? 'throw';
    if (this.#onTrimmed !== 'throw' && this.#onTrimmed !== 'resume')
      throw new InvalidArgumentError('onTrimmed', "'throw' or 'resume'", options.onTrimmed);
    this.#wakeup = new ConsumerWakeup(this.clock);
    const silentMs = positiveInteger(
      'silentMs',
      options.silentMs ?? defaultSilentMs + Math.max(this.#pollIntervalMs, this.#retryDelayMs),
    );
    this.#health = new HealthRecord(this.clock, { database: { silentMs } });
  }

  /**
   * Whether the runner reaches its database, from the outcome of its own statements (its looks
   * for entries, its batches' transactions, its LISTEN): 'failing', with `dependency`
   * `'database'` and `during` `'apply'` (or `'listen'`), while they fail, or when none has
   * answered for `silentMs` (one hangs); 'ok' again after the next one that succeeds. A batch
   * the projection's `apply` throws from is its problem, not the database's, and so is a stream
   * trimmed past the stored position or a forgotten position row: the database answered, and
   * the `error` events and `lag()` say what holds the projection. A read of memory.
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

  protected override async onStop(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.stop();
    if (this.#retryTimer !== undefined) this.clock.clearTimeout(this.#retryTimer);
    this.#endRetry?.();
    await this.#loop;
    await this.#unlisten?.().catch(() => undefined);
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
   * `ProjectionNotFoundError`.
   */
  async applyNext(): Promise<number> {
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
      this.#health.failed('database', error, 'apply');
      throw error;
    }
    this.#health.succeeded('database');
    if (lag === 0) return 0;
    // Set when the projection's own `apply` threw: the batch failed, the database did not.
    let applyThrew = false;
    let outcome: BatchOutcome | undefined;
    try {
      outcome = await this.#db.transaction((tx) => this.#applyBatch(tx, () => (applyThrew = true)));
    } catch (error) {
      if (!applyThrew && !isAnswer(error)) this.#health.failed('database', error, 'apply');
      throw error;
    }
    this.#health.succeeded('database');
    if (outcome?.skipped !== undefined) this.events.emit('skipped', outcome.skipped);
    if (outcome?.applied === undefined) return 0;
    this.events.emit('applied', outcome.applied);
    return outcome.applied.count;
  }

  /**
   * One batch, in `tx`: locks the stored position, reads the entries after it, applies them and
   * moves the position; undefined when it moved nothing. `onApplyThrew` is called when the
   * projection's `apply` throws, before the error goes on.
   */
  async #applyBatch(tx: Tx, onApplyThrew: () => void): Promise<BatchOutcome | undefined> {
    const { rows } = await tx.query<{ position: string }>(lockStoredPosition, [this.projection, this.stream]);
    if (rows[0] === undefined) throw new ProjectionNotFoundError(this.stream, this.projection, 'apply');
    const from = Number(rows[0].position);
    const entries = await this.#reader.read(
      this.stream,
      { after: from, limit: this.#batchSize, onTrimmed: this.#onTrimmed },
      tx,
    );
    // Past `from` only with 'resume', after a trim: the page starts later, or nothing is left.
    let start = from;
    if (entries.length > 0) start = entries[0]!.position - 1;
    else if (this.#onTrimmed === 'resume')
      start = Math.max(from, (await this.#reader.bounds(this.stream, tx)).first - 1);
    const skipped = start > from ? { from, to: start, count: start - from } : undefined;
    if (entries.length > 0) {
      try {
        await this.#handler.apply(entries, tx);
      } catch (error) {
        onApplyThrew();
        throw error;
      }
    }
    const to = entries.at(-1)?.position ?? start;
    if (to === from) return undefined;
    await tx.query(
      'UPDATE keel_stream_positions SET position = $3, updated_at = now() WHERE projection = $1 AND stream = $2',
      [this.projection, this.stream, to],
    );
    const applied = entries.length > 0 ? { from: start, to, count: entries.length } : undefined;
    return { skipped, applied };
  }

  /** Applies batches until none is left; returns how many entries it applied. */
  async catchUp(): Promise<number> {
    let total = 0;
    for (let n = await this.applyNext(); n > 0; n = await this.applyNext()) total += n;
    return total;
  }

  /**
   * Empties the read model (`Projection.reset`) and sets the position back to the stream's start
   * in one transaction: 0, or after a trim the position before the first retained entry, so a
   * started runner then replays what the stream still holds (the trimmed entries are gone for
   * good). A batch another runner has in flight commits first (the position row's lock), so none
   * lands on the emptied model. A forgotten position row is stored again, at that start.
   */
  async rebuild(): Promise<void> {
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
      let applied: number;
      try {
        applied = await this.applyNext();
      } catch (error) {
        this.events.emit('error', { error, during: 'apply' });
        await this.#retryPause();
        continue;
      }
      // A full batch means more may wait: look again at once.
      if (applied >= this.#batchSize) continue;
      await this.#wakeup.pause(this.#pollIntervalMs);
    }
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
