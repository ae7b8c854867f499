// Where the WAL outbox relay stands in the slot's WAL — taken for publishing, published, confirmed
// to the server — and the confirmations themselves: only what was published is ever confirmed,
// and the server recycles the WAL before the confirmed position.
import type { Clock, TimerHandle } from '../time/index.ts';
import { formatLsn } from './lsn.ts';

/** While batches follow each other, the relay confirms its position at most this often. */
const confirmEveryMs = 50;

export class SlotPositions {
  readonly #clock: Clock;
  /** Sends a position to the server (on the stream of the moment); `ping`: asks for its answer at once. */
  readonly #acknowledge: (lsn: string, ping: boolean) => void;
  /** Everything up to here was published (or held nothing of ours). */
  #published = 0n;
  /** Everything up to here was taken for publishing: sent again after a reconnect, it is skipped. */
  #taken = 0n;
  /** The position last confirmed to the server, and when. */
  #confirmed = 0n;
  #confirmedAt = 0;
  #confirmTimer: TimerHandle | undefined;

  constructor(clock: Clock, acknowledge: (lsn: string, ping: boolean) => void) {
    this.#clock = clock;
    this.#acknowledge = acknowledge;
  }

  get published(): bigint {
    return this.#published;
  }

  get taken(): bigint {
    return this.#taken;
  }

  /**
   * The slot's confirmed position: everything before it was published (by this relay or another),
   * so the relay starts from there.
   */
  catchUp(position: bigint): void {
    if (position > this.#published) this.#published = position;
    if (position > this.#taken) this.#taken = position;
    if (position > this.#confirmed) this.#confirmed = position;
  }

  /** A batch up to `lsn` was taken for publishing. */
  take(lsn: bigint): void {
    if (lsn > this.#taken) this.#taken = lsn;
  }

  /** A batch up to `lsn` was published: confirmed soon. */
  publish(lsn: bigint): void {
    if (lsn > this.#published) this.#published = lsn;
    this.#confirmSoon();
  }

  /** Stopping: what was published is confirmed before the stream closes. */
  confirmLast(): void {
    if (this.#confirmTimer !== undefined) this.#clock.clearTimeout(this.#confirmTimer);
    this.#confirmTimer = undefined;
    this.confirm(false);
  }

  /**
   * Sends the published position to the server; `always`: also when it did not move (a reply).
   * `ping`: the server is asked to answer at once (a keepalive), which tells the relay the stream
   * still lives. Returns whether anything was sent.
   */
  confirm(always: boolean, ping = false): boolean {
    if (!always && this.#published <= this.#confirmed) return false;
    const position = this.#published > this.#confirmed ? this.#published : this.#confirmed;
    if (position === 0n) return false;
    this.#confirmed = position;
    this.#confirmedAt = this.#clock.now();
    // pg-logical-replication sends the position it is given plus one. The server skips every
    // transaction whose commit record starts before the confirmed position, and the next commit
    // record may start exactly where this one ended: confirming end + 1 lost it (found by the
    // chaos test). So the relay hands over one less, and the server gets the position itself.
    this.#acknowledge(formatLsn(position - 1n), ping);
    return true;
  }

  /**
   * Each confirmation is a write to the socket: when small transactions stream in one at a time,
   * confirming every batch cost more than decoding it. So the relay confirms at most every
   * `confirmEveryMs`, and once more that long after the last batch: a crash repeats at most that
   * much, and a stop confirms everything.
   */
  #confirmSoon(): void {
    const wait = this.#confirmedAt + confirmEveryMs - this.#clock.now();
    if (wait <= 0) {
      this.confirm(false);
      return;
    }
    this.#confirmTimer ??= this.#clock.setTimeout(() => {
      this.#confirmTimer = undefined;
      this.confirm(false);
    }, wait);
  }
}
