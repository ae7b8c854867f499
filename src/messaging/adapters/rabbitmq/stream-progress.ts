/**
 * What a stream reader holds, in offset order: each message waiting to be handed out (now, or
 * when its retry's backoff ends), handed out, or handled. It says how far the group may commit:
 * the end of the longest handled prefix. A slow or retrying message holds the commit point back,
 * never the other messages.
 */
export class StreamProgress<D> {
  #entries: Entry<D>[] = [];
  readonly #byDelivery = new Map<D, Entry<D>>();

  /** Messages held (any state) that the commit point has not passed. */
  get size(): number {
    return this.#entries.length;
  }

  /** A message read from the stream, to be handed out at once. */
  add(offset: number, delivery: D): void {
    const entry: Entry<D> = { offset, delivery, state: 'waiting', dueAt: 0 };
    this.#entries.push(entry);
    this.#byDelivery.set(delivery, entry);
  }

  /**
   * A message that is never handed out (one being parked as undecodable): the commit point
   * waits at it until the returned `done` is called.
   */
  hold(offset: number): () => void {
    const entry: Entry<D> = { offset, delivery: undefined, state: 'claimed', dueAt: 0 };
    this.#entries.push(entry);
    return () => (entry.state = 'done');
  }

  /** Up to `max` waiting messages due by `now`, in offset order; they are handed out. */
  claim(now: number, max: number): D[] {
    const out: D[] = [];
    for (const entry of this.#entries) {
      if (out.length >= max) break;
      if (entry.state !== 'waiting' || entry.dueAt > now || entry.delivery === undefined) continue;
      entry.state = 'claimed';
      out.push(entry.delivery);
    }
    return out;
  }

  /** Whether `delivery` is held here (handed out or waiting), not handled nor forgotten. */
  holds(delivery: D): boolean {
    return this.#byDelivery.has(delivery);
  }

  /** Marks `delivery` handled; false when it is not held here. */
  done(delivery: D): boolean {
    const entry = this.#byDelivery.get(delivery);
    if (entry === undefined) return false;
    entry.state = 'done';
    this.#byDelivery.delete(delivery);
    return true;
  }

  /** Hands `delivery` out again as `again` (its next attempt) from `dueAt` on. */
  retryAt(delivery: D, again: D, dueAt: number): void {
    const entry = this.#byDelivery.get(delivery);
    if (entry === undefined) return;
    this.#byDelivery.delete(delivery);
    entry.delivery = again;
    entry.state = 'waiting';
    entry.dueAt = dueAt;
    this.#byDelivery.set(again, entry);
  }

  /**
   * Drops the handled messages at the head and returns the offset of the last of them: what the
   * group may commit now. Undefined when the head is not handled yet.
   */
  takeHandledPrefix(): number | undefined {
    let count = 0;
    while (count < this.#entries.length && this.#entries[count]!.state === 'done') count++;
    if (count === 0) return undefined;
    const last = this.#entries[count - 1]!.offset;
    this.#entries = this.#entries.slice(count);
    return last;
  }

  /** Forgets everything: the channel went, and the group is read again from its last commit. */
  clear(): void {
    this.#entries = [];
    this.#byDelivery.clear();
  }
}

interface Entry<D> {
  readonly offset: number;
  /** Undefined for a message that is never handed out (see `hold`). */
  delivery: D | undefined;
  state: 'waiting' | 'claimed' | 'done';
  /** Not handed out before this instant (a retry's backoff); 0: at once. */
  dueAt: number;
}
