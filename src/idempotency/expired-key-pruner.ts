import { InvalidArgumentError } from '../errors/index.ts';
import { HealthRecord, ServiceBase, type ReportsHealth, type ServiceHealth } from '../service/index.ts';
import type { Clock, TimerHandle } from '../time/index.ts';

export interface PrunableStore {
  /** Deletes expired keys; returns how many. */
  prune(): Promise<number>;
}

export interface ExpiredKeyPrunerEvents {
  pruned: { deleted: number };
}

/**
 * Deletes expired idempotency keys from a table store every `intervalMs`. Expiry itself needs no
 * pruning (an expired key is treated as absent); this only keeps the table small. Several
 * pruners at once are harmless: each deletes what it finds, in batches.
 */
export class ExpiredKeyPruner extends ServiceBase<ExpiredKeyPrunerEvents> implements ReportsHealth {
  readonly #store: PrunableStore;
  readonly #intervalMs: number;
  readonly #health: HealthRecord<'database'>;
  #timer: TimerHandle | undefined;
  #running: Promise<void> | undefined;

  /** `name` tells pruners apart in logs and events; any `prune()` fits (finished sagas, too). */
  constructor(store: PrunableStore, options: { intervalMs?: number; clock?: Clock; name?: string } = {}) {
    super(options.name ?? 'idempotency-pruner', options.clock);
    this.#store = store;
    this.#intervalMs = options.intervalMs ?? 10 * 60_000;
    if (!Number.isFinite(this.#intervalMs) || this.#intervalMs <= 0)
      throw new InvalidArgumentError('intervalMs', 'a number of ms > 0', this.#intervalMs);
    // A pass begins an interval after the last one ended: with no answer for two intervals, a
    // pass was due and has not answered for a whole interval (a statement hangs). Not one
    // interval: a pass that takes a moment would flip it at every turn.
    this.#health = new HealthRecord(this.clock, { database: { silentMs: 2 * this.#intervalMs } });
  }

  /**
   * Whether its prunes reach the database: 'failing' (`dependency` `'database'`, `during`
   * `'prune'`) after a pass that failed, or when none has answered for two intervals (one
   * hangs); 'ok' again after the next pass that succeeds, `lastContactAt` the last one's end.
   * Before the first pass (an interval after the start) it is 'ok' with no `lastContactAt`. A
   * `pruneOnce()` of your own counts as a pass. A read of memory.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    this.#schedule();
  }

  protected override async onStop(): Promise<void> {
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One pass now; returns how many keys were deleted. */
  async pruneOnce(): Promise<number> {
    const deleted = await this.#health.track('database', 'prune', () => this.#store.prune());
    this.events.emit('pruned', { deleted });
    return deleted;
  }

  #schedule(): void {
    this.#timer = this.clock.setTimeout(() => {
      this.#running = this.pruneOnce()
        .then(
          () => undefined,
          (error: unknown) => this.events.emit('error', { error, during: 'prune' }),
        )
        .finally(() => {
          this.#running = undefined;
          if (this.state === 'running') this.#schedule();
        });
    }, this.#intervalMs);
  }
}
