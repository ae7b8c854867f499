import type { Delivery } from '../../delivery-source.ts';

interface Waiting<D> {
  /** Arrival order: a retried delivery goes back to its old place, ahead of its key's successors. */
  readonly seq: number;
  readonly delivery: D;
  /** Not handed out before this instant (a retry's backoff); 0: at once. */
  readonly dueAt: number;
}

/**
 * Per-key ordering inside one consumer: deliveries wait here in arrival order, and `claim` hands
 * out only those whose key has no earlier delivery still unfinished (handed out, or waiting for
 * its retry's backoff). Deliveries without a key never wait for each other. A delivery stays
 * "unfinished" from `add` until `done`, so a retried one (`retryAt`) is never overtaken by the
 * later deliveries of its key.
 *
 * Plain data: the caller passes the time, so tests drive it without a clock.
 */
export class KeyGate<D extends Delivery> {
  #waiting: Waiting<D>[] = [];
  /** Keys with a delivery handed out and not yet done. */
  readonly #active = new Set<string>();
  readonly #seqOf = new Map<D, number>();
  #nextSeq = 0;

  /** Deliveries held: waiting or handed out and not done. */
  get size(): number {
    return this.#seqOf.size;
  }

  /** Deliveries waiting to be handed out (including retries in their backoff). */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** A newly received delivery, after every delivery received before it. */
  add(delivery: D): void {
    const seq = this.#nextSeq++;
    this.#seqOf.set(delivery, seq);
    this.#waiting.push({ seq, delivery, dueAt: 0 });
  }

  /**
   * Marks up to `max` deliveries handed out and returns them, in arrival order: due, and with no
   * earlier unfinished delivery of the same key.
   */
  claim(now: number, max: number): D[] {
    const out: D[] = [];
    if (max <= 0 || this.#waiting.length === 0) return out;
    // Keys seen waiting in this pass: their successors wait behind them.
    const blocked = new Set<string>();
    const kept: Waiting<D>[] = [];
    for (const entry of this.#waiting) {
      const key = entry.delivery.envelope.key;
      const free = key === null || (!this.#active.has(key) && !blocked.has(key));
      if (out.length < max && free && entry.dueAt <= now) {
        out.push(entry.delivery);
        if (key !== null) this.#active.add(key);
        continue;
      }
      if (key !== null) blocked.add(key);
      kept.push(entry);
    }
    this.#waiting = kept;
    return out;
  }

  /**
   * `handed` failed and comes back as `next` (the same message, its attempt counted) at `dueAt`,
   * in the place `handed` had: its key stays held until then.
   */
  retryAt(handed: D, next: D, dueAt: number): void {
    const seq = this.#seqOf.get(handed);
    if (seq === undefined) return;
    this.#seqOf.delete(handed);
    this.#seqOf.set(next, seq);
    const key = handed.envelope.key;
    if (key !== null) this.#active.delete(key);
    let at = this.#waiting.length;
    while (at > 0 && this.#waiting[at - 1]!.seq > seq) at--;
    this.#waiting.splice(at, 0, { seq, delivery: next, dueAt });
  }

  /** `delivery` is settled (acked, dead-lettered): its key's next delivery may go. */
  done(delivery: D): void {
    if (!this.#seqOf.delete(delivery)) return;
    const key = delivery.envelope.key;
    if (key !== null) this.#active.delete(key);
  }

  /** Whether `delivery` is still held here (not done, not forgotten by `clear`). */
  holds(delivery: D): boolean {
    return this.#seqOf.has(delivery);
  }

  /** Forgets everything: the channel closed and the broker took every message back. */
  clear(): void {
    this.#waiting = [];
    this.#active.clear();
    this.#seqOf.clear();
  }
}
