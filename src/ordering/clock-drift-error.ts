import { KeelError } from '../errors/index.ts';

/**
 * A remote HLC stamp was further ahead of this node's physical clock than `maxDriftMs`.
 * Accepting it would drag this node's clock (and every stamp it issues after) that far into
 * the future, so it is refused and the clock is left as it was.
 *
 * Either the sender's clock or this node's is wrong; which one is not knowable here. For a
 * consumed message this is a retryable failure: as time passes the stamp comes within bounds,
 * and if it never does the message dead-letters with this error in its headers.
 */
export class ClockDriftError extends KeelError {
  /** The remote stamp's physical part, ms since the epoch. */
  readonly remotePhysical: number;
  /** This node's physical time when the stamp arrived. */
  readonly localPhysical: number;
  readonly maxDriftMs: number;

  constructor(remote: string, remotePhysical: number, localPhysical: number, maxDriftMs: number) {
    const driftMs = remotePhysical - localPhysical;
    super(
      'KEEL_CLOCK_DRIFT',
      `HLC stamp ${remote} is ${driftMs} ms ahead of this node's clock; at most ${maxDriftMs} ms is accepted`,
      { details: { remote, remotePhysical, localPhysical, driftMs, maxDriftMs } },
    );
    this.remotePhysical = remotePhysical;
    this.localPhysical = localPhysical;
    this.maxDriftMs = maxDriftMs;
  }

  /** How far ahead the remote stamp was, in ms. */
  get driftMs(): number {
    return this.remotePhysical - this.localPhysical;
  }
}
