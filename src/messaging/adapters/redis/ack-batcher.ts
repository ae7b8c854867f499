/**
 * Gathers the acks made in one go (before the microtasks queued after the first have run: several
 * consumers' runtimes on one source acking in the same callback) into one call of `send`. Each `add` resolves when its batch
 * is settled, with those of its own deliveries that `send` refused, or rejects with the batch's
 * error.
 */
export class AckBatcher<D> {
  readonly #send: (deliveries: readonly D[]) => Promise<readonly D[]>;
  #batch: Batch<D> | undefined;

  /** `send` settles a batch in one round trip and resolves with the deliveries it refused. */
  constructor(send: (deliveries: readonly D[]) => Promise<readonly D[]>) {
    this.#send = send;
  }

  add(deliveries: readonly D[]): Promise<readonly D[]> {
    if (deliveries.length === 0) return Promise.resolve([]);
    let batch = this.#batch;
    if (batch === undefined) {
      batch = { deliveries: [], waiters: [] };
      this.#batch = batch;
      // Once the code that made this ack has run (a microtask, not a timer nor a turn of the
      // event loop: no time passes, no clock is read, and the ack is not held up). The runtime
      // gathers each batch over a turn already; another turn here only delayed every batch.
      queueMicrotask(() => void this.#flush());
    }
    const from = batch.deliveries.length;
    for (const delivery of deliveries) batch.deliveries.push(delivery);
    const to = batch.deliveries.length;
    const waiters = batch.waiters;
    return new Promise((resolve, reject) => waiters.push({ from, to, resolve, reject }));
  }

  async #flush(): Promise<void> {
    const batch = this.#batch;
    this.#batch = undefined;
    if (batch === undefined) return;
    let refused: readonly D[];
    try {
      refused = await this.#send(batch.deliveries);
    } catch (error) {
      for (const waiter of batch.waiters) waiter.reject(error);
      return;
    }
    const fenced = refused.length === 0 ? undefined : new Set(refused);
    for (const waiter of batch.waiters) {
      waiter.resolve(
        fenced === undefined
          ? []
          : batch.deliveries.slice(waiter.from, waiter.to).filter((d) => fenced.has(d)),
      );
    }
  }
}

interface Batch<D> {
  readonly deliveries: D[];
  /** Each `add`: its deliveries are `deliveries[from, to)`. */
  readonly waiters: {
    from: number;
    to: number;
    resolve: (refused: readonly D[]) => void;
    reject: (error: unknown) => void;
  }[];
}
