import type { Clock } from '../time/index.ts';

/**
 * Whether the server at the other end of the replication stream is still there.
 *
 * A stream can go silent without breaking: a network that drops packets without a reset, or a
 * server process that stopped, leaves the socket open, and the relay's status replies only queue
 * until TCP gives up on them — about fifteen minutes on Linux — while the relay publishes nothing
 * and says it is fine. PostgreSQL's own standbys end such a stream after `wal_receiver_timeout`;
 * the relay does the same: its periodic status reply asks the server to answer at once, and a
 * stream that has heard nothing for `timeoutMs` while reading is ended and started again.
 *
 * Time spent not reading (the relay's queue full, the socket paused) does not count: the server's
 * answers wait unread in the socket then, and the count starts again when reading resumes.
 */
export class StreamLiveness {
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  #heardAt: number;
  #reading = true;

  constructor(clock: Clock, timeoutMs: number) {
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.#heardAt = clock.now();
  }

  /** A stream starts: nothing heard yet, and silence counted from now. */
  started(): void {
    this.#heardAt = this.#clock.now();
    this.#reading = true;
  }

  /** The server sent something: data, a keepalive, the stream's start. */
  heard(): void {
    this.#heardAt = this.#clock.now();
  }

  paused(): void {
    this.#reading = false;
  }

  resumed(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.#heardAt = this.#clock.now();
  }

  /** How long the server has been silent while the relay read, if longer than `timeoutMs`; else undefined. */
  silentFor(): number | undefined {
    if (!this.#reading) return undefined;
    const silent = this.#clock.now() - this.#heardAt;
    return silent > this.#timeoutMs ? silent : undefined;
  }
}
