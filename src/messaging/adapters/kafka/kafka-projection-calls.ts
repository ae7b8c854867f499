// What a projection runner's stop() waits for besides its loop: its one-shot calls in flight
// (catchUp(), partitions(), progress(), lag()), started or not. A command line's runner is never
// started, so the base class has nothing of it to stop; its catchUp() must still end after the
// batch in hand, and stop() resolve after it, not while batches go on being applied.
import { KeelError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { TopicFetcher } from './topic-fetcher.ts';

/**
 * What a `catchUp()` that `stop()` ended rejects with, once the batch in hand committed (or,
 * past the drain deadline, rolled back: `cause`): `applied` records committed, before a fetch
 * found nothing more.
 */
export function catchUpStopped(name: string, applied: number, cause?: unknown): KeelError {
  return new KeelError(
    'KEEL_SERVICE_STATE',
    `${name} stopped catching up: it was stopped after applying ${applied} record(s), ` +
      'before a fetch found nothing more',
    { cause, details: { applied } },
  );
}

/** The drain of the calls of a runner that was never started: as `ServiceBase` drains a started one. */
export interface CallsDrain {
  readonly clock: Clock;
  /** `stop()`'s `drainMs`. */
  readonly drainMs: number;
  /** Named in the abort's reason. */
  readonly name: string;
  /** Aborted once the deadline passes: its signal is the one the calls' batches check. */
  readonly controller: AbortController;
  /** Called once the deadline passes, before the calls' own connections are closed. */
  readonly onTimeout: () => void;
}

/** A runner's one-shot calls in flight, and the Kafka clients they opened for themselves. */
export class OneShotCalls {
  readonly #inFlight = new Set<Promise<unknown>>();
  /** The clients of calls made while the runner's loop was not running (each closed when its call ends). */
  readonly #own = new Set<TopicFetcher>();

  /**
   * Runs `work` with `shared` (the running loop's client), or else with a client of its own,
   * closed when it ends; counted in flight until it settles.
   */
  run<T>(
    shared: TopicFetcher | undefined,
    open: () => TopicFetcher,
    work: (fetcher: TopicFetcher) => Promise<T>,
  ): Promise<T> {
    const call = (async () => (shared === undefined ? this.#withOwn(open(), work) : work(shared)))();
    this.#inFlight.add(call);
    const forget = (): void => void this.#inFlight.delete(call);
    call.then(forget, forget);
    return call;
  }

  /** Resolves once no call is in flight, those begun meanwhile included. Never rejects. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Closes the clients the calls in flight opened: a fetch waiting on a Kafka gone fails at once. */
  async closeOwn(): Promise<void> {
    const own = [...this.#own];
    this.#own.clear();
    await Promise.all(own.map((fetcher) => fetcher.close()));
  }

  /**
   * Waits for the calls of a runner never started, for at most `drainMs` on the clock; past it
   * aborts `controller` (a batch in flight then rolls back when its `apply` returns), closes the
   * calls' own clients, and resolves one turn later whether they have settled or not, as
   * `ServiceBase.stop` does for a started runner.
   */
  async drain(settings: CallsDrain): Promise<void> {
    if (this.#inFlight.size === 0) return;
    const { clock, drainMs, name, controller, onTimeout } = settings;
    const expired = new Promise<void>((resolve) => {
      controller.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const timer = clock.setTimeout(() => {
      onTimeout();
      controller.abort(new KeelError('KEEL_ABORTED', `${name}: drain deadline of ${drainMs} ms passed`));
    }, drainMs);
    try {
      await Promise.race([this.settled(), expired]);
      if (!controller.signal.aborted) return;
      await this.closeOwn();
      await Promise.race([this.settled(), new Promise<void>((resolve) => setImmediate(resolve))]);
    } finally {
      clock.clearTimeout(timer);
    }
  }

  async #withOwn<T>(fetcher: TopicFetcher, work: (fetcher: TopicFetcher) => Promise<T>): Promise<T> {
    this.#own.add(fetcher);
    try {
      return await work(fetcher);
    } finally {
      // Closed already when a drain deadline passed meanwhile.
      if (this.#own.delete(fetcher)) await fetcher.close();
    }
  }
}
