/**
 * Runs one operation at a time and folds requests that arrive while it runs into a single
 * follow-up run: every caller resolves after a run that started after its request. Kafka offset
 * commits are cumulative, so one commit covers every ack that came before it.
 */
export class CommitBatcher {
  readonly #run: () => Promise<void>;
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;

  constructor(run: () => Promise<void>) {
    this.#run = run;
  }

  request(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    if (this.#running === undefined) return this.#start();
    const after = this.#running.then(
      () => undefined,
      () => undefined,
    );
    this.#queued = after.then(() => {
      this.#queued = undefined;
      return this.#start();
    });
    return this.#queued;
  }

  #start(): Promise<void> {
    const running = this.#run().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }
}
