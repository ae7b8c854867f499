import { InvalidArgumentError } from '../errors/index.ts';
import { ServiceBase } from '../service/index.ts';
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
export class ExpiredKeyPruner extends ServiceBase<ExpiredKeyPrunerEvents> {
  readonly #store: PrunableStore;
  readonly #intervalMs: number;
  #timer: TimerHandle | undefined;
  #running: Promise<void> | undefined;

  /** `name` tells pruners apart in logs and events; any `prune()` fits (finished sagas, too). */
  constructor(store: PrunableStore, options: { intervalMs?: number; clock?: Clock; name?: string } = {}) {
    super(options.name ?? 'idempotency-pruner', options.clock);
    this.#store = store;
    this.#intervalMs = options.intervalMs ?? 10 * 60_000;
    if (!Number.isFinite(this.#intervalMs) || this.#intervalMs <= 0)
      throw new InvalidArgumentError('intervalMs', 'a number of ms > 0', this.#intervalMs);
  }

  protected override async onStart(): Promise<void> {
    this.#schedule();
  }

  protected override async onStop(): Promise<void> {
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One pass now; returns how many keys were deleted. */
  async pruneOnce(): Promise<number> {
    const deleted = await this.#store.prune();
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
