import type { ListenerHandle } from '../../../src/service/index.ts';
import type { Clock, TimerHandle } from '../../../src/time/index.ts';
import type { DashboardSnapshot } from './dashboard-snapshot.ts';

export interface DashboardFeedOptions {
  clock: Clock;
  /** How often subscribers get a new snapshot, and how long one is served from the cache. Default 1000 ms. */
  intervalMs?: number;
}

/**
 * One reader of snapshots for every open page: however many pages (and `/state` callers) there
 * are, the database sees one set of queries per interval. It ticks only while someone
 * subscribes, and the next tick is set once a read has finished, so a slow database slows the
 * page rather than piling up reads.
 */
export class DashboardFeed {
  readonly #build: () => Promise<DashboardSnapshot>;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #listeners = new Set<(snapshot: DashboardSnapshot) => void>();
  #cached: { snapshot: DashboardSnapshot; at: number } | undefined;
  #reading: Promise<DashboardSnapshot> | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(build: () => Promise<DashboardSnapshot>, options: DashboardFeedOptions) {
    this.#build = build;
    this.#clock = options.clock;
    this.#intervalMs = options.intervalMs ?? 1000;
  }

  get subscribers(): number {
    return this.#listeners.size;
  }

  /** A snapshot at most one interval old: the cached one, the one being read, or a new read. */
  latest(): Promise<DashboardSnapshot> {
    const cached = this.#cached;
    if (cached !== undefined && this.#clock.now() - cached.at < this.#intervalMs) {
      return Promise.resolve(cached.snapshot);
    }
    return this.#read();
  }

  /**
   * Calls `listener` with a snapshot at once, then with each new one until the handle is
   * disposed or the feed closed. A failed read skips that tick for everyone.
   */
  subscribe(listener: (snapshot: DashboardSnapshot) => void): ListenerHandle {
    const dispose = (): void => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopTicking();
    };
    const handle = { dispose, [Symbol.dispose]: dispose };
    if (this.#closed) return handle;
    this.#listeners.add(listener);
    this.latest().then(
      (snapshot) => {
        if (this.#listeners.has(listener)) listener(snapshot);
      },
      () => undefined,
    );
    if (this.#timer === undefined) this.#schedule();
    return handle;
  }

  /** Stops ticking and forgets every subscriber. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stopTicking();
  }

  #read(): Promise<DashboardSnapshot> {
    this.#reading ??= this.#build()
      .then((snapshot) => {
        this.#cached = { snapshot, at: this.#clock.now() };
        return snapshot;
      })
      .finally(() => {
        this.#reading = undefined;
      });
    return this.#reading;
  }

  #schedule(): void {
    const timer = this.#clock.setTimeout(() => void this.#tick(timer), this.#intervalMs);
    this.#timer = timer;
  }

  async #tick(timer: TimerHandle): Promise<void> {
    const snapshot = await this.#read().catch(() => undefined);
    if (snapshot !== undefined) for (const listener of [...this.#listeners]) listener(snapshot);
    // Unless ticking stopped during the read, or stopped and started again with a timer of its own.
    if (this.#timer === timer && this.#listeners.size > 0) this.#schedule();
  }

  #stopTicking(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
