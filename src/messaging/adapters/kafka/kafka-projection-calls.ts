// What a projection runner's stop() waits for besides its loop: its one-shot calls in flight
// (catchUp(), partitions(), progress(), lag()), started or not. A command line's runner is never
// started, and has only these to stop (the base class's onStopUnstarted); its catchUp() must
// still end after the batch in hand, and stop() resolve after it, not while batches go on being
// applied.
import type { TopicFetcher } from './topic-fetcher.ts';

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

  /** How many calls are in flight. */
  get inFlight(): number {
    return this.#inFlight.size;
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
