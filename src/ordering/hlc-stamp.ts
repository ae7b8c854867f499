import { InvalidArgumentError } from '../errors/index.ts';

/**
 * One hybrid logical clock timestamp: what an envelope carries and what two nodes compare.
 * Plain data, so it serialises as it is; `formatHlc` gives the compact sortable string.
 */
export interface HlcStamp {
  /** Milliseconds since the Unix epoch: the largest physical time the node had seen. An integer in [0, `hlcMaxPhysical`]. */
  readonly physical: number;
  /** Orders events that share `physical`. An integer in [0, `hlcMaxLogical`]. */
  readonly logical: number;
  /** The node that issued the stamp; breaks ties, so stamps of different nodes never compare equal. */
  readonly node: string;
}

const physicalWidth = 12;
const logicalWidth = 6;

/** The largest physical part the encoding holds: 2^48 - 1 ms, in the year 10889. */
export const hlcMaxPhysical = 16 ** physicalWidth - 1;

/**
 * The largest logical counter: 2^24 - 1. A clock that would pass it moves its physical part
 * one millisecond ahead instead (see `HybridLogicalClock`).
 */
export const hlcMaxLogical = 16 ** logicalWidth - 1;

/**
 * Node ids: 1 to 64 of `A-Z a-z 0-9 . _ : @ -`. Enough for a host name, a pod name or a UUID,
 * and safe in any message header without escaping.
 */
export const hlcNodePattern = /^[A-Za-z0-9._:@-]{1,64}$/;

const encodedPattern = /^([0-9a-f]{12})\.([0-9a-f]{6})\.([A-Za-z0-9._:@-]{1,64})$/;

/**
 * The compact string form: `<physical, 12 hex digits>.<logical, 6 hex digits>.<node>`, for
 * example `019b7a7e5c00.000003.orders-1`. Fixed width and lower-case, so comparing two encoded
 * stamps as strings (code unit order, `<` in JavaScript, `COLLATE "C"` in PostgreSQL) gives the
 * same order as `compareHlc`, node id included.
 */
export function formatHlc(stamp: HlcStamp): string {
  assertHlcStamp(stamp, 'stamp');
  return (
    stamp.physical.toString(16).padStart(physicalWidth, '0') +
    '.' +
    stamp.logical.toString(16).padStart(logicalWidth, '0') +
    '.' +
    stamp.node
  );
}

/** Parses `formatHlc`'s output; throws `InvalidArgumentError` naming `field` for anything else. */
export function parseHlc(text: string, field = 'hlc'): HlcStamp {
  const match = typeof text === 'string' ? encodedPattern.exec(text) : null;
  if (match === null) {
    throw new InvalidArgumentError(field, 'an HLC stamp like 019b7a7e5c00.000003.node-1', text);
  }
  return { physical: parseInt(match[1]!, 16), logical: parseInt(match[2]!, 16), node: match[3]! };
}

/**
 * The total order of stamps: physical, then logical, then node id (code unit order). Returns
 * a negative number, 0 or a positive number, so it can be passed to `Array.prototype.sort`.
 * If a happened before b then `compareHlc(a, b) < 0`; the converse does not hold.
 */
export function compareHlc(a: HlcStamp, b: HlcStamp): -1 | 0 | 1 {
  if (a.physical !== b.physical) return a.physical < b.physical ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  if (a.node !== b.node) return a.node < b.node ? -1 : 1;
  return 0;
}

/** Throws `InvalidArgumentError` unless `stamp` is a well-formed `HlcStamp`. */
export function assertHlcStamp(stamp: HlcStamp, field: string): void {
  if (typeof stamp !== 'object' || stamp === null) {
    throw new InvalidArgumentError(field, 'an HLC stamp { physical, logical, node }', stamp);
  }
  if (!Number.isSafeInteger(stamp.physical) || stamp.physical < 0 || stamp.physical > hlcMaxPhysical) {
    throw new InvalidArgumentError(
      `${field}.physical`,
      `an integer in [0, ${hlcMaxPhysical}]`,
      stamp.physical,
    );
  }
  if (!Number.isSafeInteger(stamp.logical) || stamp.logical < 0 || stamp.logical > hlcMaxLogical) {
    throw new InvalidArgumentError(`${field}.logical`, `an integer in [0, ${hlcMaxLogical}]`, stamp.logical);
  }
  if (typeof stamp.node !== 'string' || !hlcNodePattern.test(stamp.node)) {
    throw new InvalidArgumentError(
      `${field}.node`,
      `a node id matching ${String(hlcNodePattern)}`,
      stamp.node,
    );
  }
}
