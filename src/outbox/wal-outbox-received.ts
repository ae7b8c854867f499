import type { Envelope } from '../messaging/envelope.ts';

/** Messages of one destination, in the order they were written. */
export interface Send {
  destination: string;
  messages: Envelope[];
}

/** One committed transaction's messages, or (none) a position the server has passed. */
export interface Received {
  sends: Send[];
  count: number;
  /** The end of the transaction's commit record (or the position): confirmed once published. */
  lsn: bigint;
}

/** A batch taken for publishing: confirmed up to `lsn` once published. */
export interface Batch extends Received {
  /** Gives the batch's messages back to the count of those held (they are published). */
  release(): void;
}

/**
 * What one stream delivered and the relay has not yet taken, in commit order. A stream that
 * ends takes its queue with it (the next one starts from the confirmed position), so a batch
 * taken from it releases into it, never into its successor's count.
 */
export class ReceivedQueue {
  readonly #items: Received[] = [];
  #head = 0;
  #held = 0;

  /** Messages received and not yet published: queued, or taken and still being published. */
  get held(): number {
    return this.#held;
  }

  get isEmpty(): boolean {
    return this.#head === this.#items.length;
  }

  push(received: Received): void {
    const last = this.#items.length > this.#head ? this.#items.at(-1) : undefined;
    // Positions in a row: only the latest matters.
    if (received.count === 0 && last !== undefined && last.count === 0) last.lsn = received.lsn;
    else this.#items.push(received);
    this.#held += received.count;
  }

  /**
   * Whole transactions from the head, up to `batchSize` messages (at least one transaction,
   * however large), each destination's messages in commit order.
   */
  take(batchSize: number): Batch | undefined {
    if (this.isEmpty) return undefined;
    const byDestination = new Map<string, Envelope[]>();
    const sends: Send[] = [];
    let count = 0;
    let lsn = 0n;
    while (!this.isEmpty) {
      const next = this.#items[this.#head]!;
      if (count > 0 && count + next.count > batchSize) break;
      this.#head++;
      for (const send of next.sends) {
        let messages = byDestination.get(send.destination);
        if (messages === undefined) {
          messages = [];
          byDestination.set(send.destination, messages);
          sends.push({ destination: send.destination, messages });
        }
        for (const message of send.messages) messages.push(message);
      }
      count += next.count;
      lsn = next.lsn;
    }
    // Taken items leave the array in one splice once they are many, not one shift each.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
    let released = false;
    return {
      sends,
      count,
      lsn,
      release: () => {
        if (released) return;
        released = true;
        this.#held -= count;
      },
    };
  }
}
