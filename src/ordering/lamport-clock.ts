import { InvalidArgumentError } from '../errors/index.ts';

/**
 * A Lamport clock (Lamport, 1978): one counter per process. If event a happened before event b
 * then `time(a) < time(b)`; the converse does not hold, so two times say nothing about whether
 * their events are causally related. Pair the time with a node id for a total order that is
 * consistent with causality.
 *
 * Not shared between processes; one instance per node. Calls are synchronous, so there is no
 * concurrency to guard within a Node process.
 */
export class LamportClock {
  #time: number;

  /** `start` (default 0) resumes a clock from a persisted value, so times keep growing across restarts. */
  constructor(start = 0) {
    assertTime('start', start);
    this.#time = start;
  }

  /** The time of the last event; does not tick. */
  get time(): number {
    return this.#time;
  }

  /** A local event or a send: advances the clock and returns the event's time. */
  tick(): number {
    assertRoom('time', this.#time);
    return ++this.#time;
  }

  /**
   * A receive: the clock moves past both its own time and the sender's, so the receive is
   * later than the send and than every earlier local event. Returns the receive's time.
   */
  receive(remote: number): number {
    assertTime('remote', remote);
    const max = Math.max(this.#time, remote);
    assertRoom(max === remote ? 'remote' : 'time', max);
    this.#time = max + 1;
    return this.#time;
  }
}

function assertTime(field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, 'a safe integer >= 0', value);
  }
}

// 2^53 events is out of reach of any real process, but a corrupt remote time is not: refuse it
// rather than lose integer precision (after which ticks would stop being distinct).
// `field` is what reached the end: the remote time, or the clock's own (resumed from `start`).
function assertRoom(field: 'remote' | 'time', time: number): void {
  if (time >= Number.MAX_SAFE_INTEGER) {
    throw new InvalidArgumentError(field, `a time below ${Number.MAX_SAFE_INTEGER}`, time);
  }
}
