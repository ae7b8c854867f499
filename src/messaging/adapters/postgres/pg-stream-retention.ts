import type { Db } from '../../../db/db.ts';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { HealthRecord, ServiceBase, type ReportsHealth, type ServiceHealth } from '../../../service/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import { ConsumerWakeup } from '../../consumer-wakeup.ts';
import { assertStreamName } from './pg-stream.ts';
import {
  defaultTrimBatchSize,
  resolveTrimOptions,
  trimStream,
  type ResolvedTrimOptions,
  type TrimBounds,
  type TrimOutcome,
} from './pg-stream-trim.ts';

/** One stream to trim and how far: `PgStream.trim`'s bounds. */
export interface StreamRetentionRule extends TrimBounds {
  stream: string;
}

export interface PgStreamRetentionOptions {
  /** The streams to trim, one rule each; a stream not listed is never trimmed. */
  streams: readonly StreamRetentionRule[];
  /** How often every stream is trimmed; the first trim runs at `start()`. Default 60 000 ms. */
  intervalMs?: number;
  /** Most entries deleted per transaction (`TrimOptions.batchSize`). Default 10 000. */
  batchSize?: number;
  /** Default the system clock. */
  clock?: Clock;
  /** The service's name, in events and logs. Default `stream-retention`. */
  name?: string;
}

export interface PgStreamRetentionEvents {
  /** A trim of `stream` deleted `deleted` entries (not emitted when it deleted none). */
  trimmed: { stream: string; deleted: number };
  /**
   * A trim of `stream` stopped at `position` because of its rule's `keepUnappliedBy`: its other
   * bounds would have let entries after it go, and `projections` (all at that stored position)
   * have not applied them. Emitted at every trim it happens, after `trimmed` when the trim also
   * deleted some: a projection far behind, or a retired one still holding the stream back
   * (`PgStream.forgetProjection`, `keel stream forget`).
   */
  held: { stream: string; position: number; projections: string[] };
}

/**
 * Trims configured streams on an interval: Kafka's `retention.ms` (`olderThanMs`) and, counted
 * in entries, `retention.bytes` (`keepLast`) for `PgStream`. Each stream's rule goes to `PgStream.trim`, so every process may run this service:
 * batches take the stream's cleaner lock, and a process finding it held skips that stream until
 * its next interval (one cleaner at a time, never two deleting the same entries).
 *
 * Lifecycle: `start()` trims at once, then every `intervalMs`; a failed trim is an `error` event
 * (`during: 'trim <stream>'`) and is tried again at the next interval. `stop()` lets the batch in
 * flight commit and starts no other. `trimOnce()` works without `start()`, for a command line.
 */
export class PgStreamRetention extends ServiceBase<PgStreamRetentionEvents> implements ReportsHealth {
  readonly #db: Db;
  readonly #rules: readonly { stream: string; trim: ResolvedTrimOptions }[];
  readonly #intervalMs: number;
  readonly #batchSize: number;
  readonly #wakeup: ConsumerWakeup;
  readonly #stopping = new AbortController();
  readonly #health: HealthRecord<'database'>;
  #loop: Promise<void> | undefined;

  constructor(db: Db, options: PgStreamRetentionOptions) {
    super(options?.name ?? 'stream-retention', options?.clock ?? systemClock);
    // Checked through an `unknown`: Array.isArray would narrow the typed rules to any[].
    const rules: unknown = options?.streams;
    if (!Array.isArray(rules))
      throw new InvalidArgumentError('streams', 'a list of { stream, ...bounds }', options?.streams);
    const seen = new Set<string>();
    options.streams.forEach((rule, i) => {
      // Bad bounds fail here, at boot, not at the first interval.
      resolveTrimOptions(rule, `streams.${i}.`);
      assertStreamName(rule.stream, `streams.${i}.stream`);
      if (seen.has(rule.stream))
        throw new InvalidArgumentError(`streams.${i}.stream`, 'a stream no earlier rule names', rule.stream);
      seen.add(rule.stream);
    });
    const positive = (field: string, value: number): number => {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new InvalidArgumentError(field, 'an integer >= 1', value);
      return value;
    };
    this.#intervalMs = positive('intervalMs', options.intervalMs ?? 60_000);
    this.#batchSize = positive('batchSize', options.batchSize ?? defaultTrimBatchSize);
    this.#rules = options.streams.map((rule) => ({
      stream: rule.stream,
      trim: resolveTrimOptions({ ...rule, batchSize: this.#batchSize, signal: this.#stopping.signal }),
    }));
    this.#db = db;
    this.#wakeup = new ConsumerWakeup(this.clock);
    // A round of trims starts `intervalMs` after the last one ended, so a trim answers at least
    // every interval plus a round's length: two intervals without one leave a whole interval for
    // the trims themselves (a backlog of millions of entries, a batch waiting for a projection's
    // batch on the position row) before silence says that a statement hangs.
    this.#health = new HealthRecord(this.clock, { database: { silentMs: 2 * this.#intervalMs } });
  }

  /**
   * Whether the service reaches its database, from the outcome of its own trims: 'failing',
   * with `dependency` `'database'` and `during` `'trim <stream>'`, while they fail, or when none
   * has answered for two `intervalMs` (one hangs); 'ok' again after the next trim that succeeds,
   * of any stream (a stream whose trims alone fail names itself in `error` events). A trim that
   * deletes nothing, or is held back by a projection, or finds another process trimming, is an
   * answer. A read of memory.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    this.#loop = this.#run();
  }

  protected override async onStop(): Promise<void> {
    this.#stopping.abort();
    this.#wakeup.stop();
    await this.#loop;
  }

  /**
   * Trims every configured stream once, in order; resolves with the entries deleted in all, and
   * rejects at the first trim that fails. Once `stop()` was called, it trims nothing.
   */
  async trimOnce(): Promise<number> {
    let total = 0;
    for (const rule of this.#rules) total += await this.#trim(rule);
    return total;
  }

  async #trim(rule: { stream: string; trim: ResolvedTrimOptions }): Promise<number> {
    let outcome: TrimOutcome;
    try {
      outcome = await trimStream(this.#db, rule.stream, rule.trim);
    } catch (error) {
      this.#health.failed('database', error, `trim ${rule.stream}`);
      throw error;
    }
    this.#health.succeeded('database');
    const { deleted, heldBy } = outcome;
    if (deleted > 0) this.events.emit('trimmed', { stream: rule.stream, deleted });
    if (heldBy !== undefined) this.events.emit('held', { stream: rule.stream, ...heldBy });
    return deleted;
  }

  async #run(): Promise<void> {
    while (!this.#stopping.signal.aborted) {
      for (const rule of this.#rules) {
        // One stream failing (its trim rolled back) does not keep the others from theirs.
        await this.#trim(rule).catch((error: unknown) =>
          this.events.emit('error', { error, during: `trim ${rule.stream}` }),
        );
      }
      await this.#wakeup.pause(this.#intervalMs);
    }
  }
}
