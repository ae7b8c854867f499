/**
 * The marks of a started relay's published batches, written beside its claims: one mark
 * transaction at a time, on a pooled connection of its own, so that on PostgreSQL the mark of
 * batch N-1 runs while batch N+1 is claimed and batch N is published. The mark (an UPDATE of
 * every published row, with its index entries) is the largest share of a batch's work in the
 * database; in the claim's transaction it lengthened every claim by its own length.
 *
 * Batches published while a mark is in flight go together in the next one. A mark that fails
 * keeps its batches for the next attempt (the next batch published, or `settle`); until a mark
 * commits, its batches' claims stay live, so their rows are neither claimed again nor overtaken.
 */
export class MarkQueue<T> {
  readonly #write: (batches: T[]) => Promise<void>;
  readonly #onError: (error: unknown) => void;
  #waiting: T[] = [];
  #running: Promise<void> | undefined;

  constructor(write: (batches: T[]) => Promise<void>, onError: (error: unknown) => void) {
    this.#write = write;
    this.#onError = onError;
  }

  /** Queues a published batch's mark; starts a mark now unless one is in flight. */
  add(batch: T): void {
    this.#waiting.push(batch);
    this.#running ??= this.#drain();
  }

  /** Waits for the mark in flight, and takes the batches still unmarked (after a failed mark). */
  async settle(): Promise<T[]> {
    await this.#running;
    return this.#waiting.splice(0);
  }

  async #drain(): Promise<void> {
    while (this.#waiting.length > 0) {
      const batches = this.#waiting.splice(0);
      try {
        await this.#write(batches);
      } catch (error) {
        this.#waiting.unshift(...batches);
        this.#onError(error);
        break;
      }
    }
    this.#running = undefined;
  }
}
