import { InvalidArgumentError } from '../../../errors/index.ts';

const name = /^[A-Za-z0-9_.:-]{1,200}$/;

export function assertName(value: unknown, field: string): asserts value is string {
  if (typeof value !== 'string' || !name.test(value)) {
    throw new InvalidArgumentError(field, 'a name of [A-Za-z0-9_.:-], 1-200 chars', value);
  }
}

/**
 * The Redis keys of one destination. The destination sits in a hash tag, `{orders}`, so all of
 * its keys live in one cluster slot and one Lua script may touch them together; it also keeps a
 * destination called `orders:retry:x` from colliding with the retry stream of `orders`.
 */
export class StreamKeys {
  /** The stream every publish appends to; consumer groups read it. */
  readonly stream: string;
  /** Sorted set of messages published for later, scored by due time (ms since epoch). */
  readonly delayed: string;
  /** Pub/Sub channel a publish signals, so waiting consumers claim at once instead of at the next poll. */
  readonly channel: string;
  readonly #base: string;

  constructor(prefix: string, destination: string) {
    this.#base = `${prefix}{${destination}}`;
    this.stream = this.#base;
    this.delayed = `${this.#base}:delayed`;
    this.channel = `${this.#base}:wake`;
  }

  /** One group's retries that are due: a stream only that group reads. */
  retry(group: string): string {
    return `${this.#base}:retry:${group}`;
  }

  /** Per-key ordering: key → id of the message of that key that may be delivered, per group. */
  keyLocks(group: string): string {
    return `${this.#base}:key-locks:${group}`;
  }

  /** Per-key ordering: prefix of the per-key lists of entries waiting for their key, per group. */
  keyWaiting(group: string): string {
    return `${this.#base}:key-waiting:${group}:`;
  }

  /**
   * Prefix of the per-consumer sets of entries taken over from that consumer, per group: while a
   * consumer's set is empty its acks need no lease check (see `ackScript`).
   */
  taken(group: string): string {
    return `${this.#base}:taken:${group}:`;
  }

  /** One group's retries waiting for their delay, scored by due time. */
  retryDelayed(group: string): string {
    return `${this.#base}:retry-delayed:${group}`;
  }
}
