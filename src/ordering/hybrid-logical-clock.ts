import { InvalidArgumentError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { ClockDriftError } from './clock-drift-error.ts';
import {
  assertHlcStamp,
  formatHlc,
  hlcMaxLogical,
  hlcMaxPhysical,
  hlcNodePattern,
  parseHlc,
  type HlcStamp,
} from './hlc-stamp.ts';

export interface HybridLogicalClockOptions {
  /** This node's id, carried in every stamp and breaking ties between nodes. Required; see `hlcNodePattern`. */
  node: string;
  /** Source of physical time in ms; only `now()` is read. Default: the system clock. */
  clock?: Pick<Clock, 'now'>;
  /**
   * How far ahead of this node's physical clock a received stamp may be, in ms, before
   * `receive` refuses it with `ClockDriftError`. Default: 60 000 (one minute: well beyond NTP
   * skew, well short of a clock set to the wrong day). `Infinity` turns the guard off.
   */
  maxDriftMs?: number;
  /**
   * The last stamp this node issued before it restarted (persisted by the caller). The clock
   * resumes after it, so stamps keep growing even if the physical clock went back meanwhile.
   * Default: none.
   */
  resumeAfter?: HlcStamp | string;
}

interface ResolvedOptions {
  node: string;
  clock: Pick<Clock, 'now'>;
  maxDriftMs: number;
  physical: number;
  logical: number;
}

export const defaultMaxDriftMs = 60_000;

/**
 * A hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014): a
 * physical part that stays close to wall-clock time plus a logical counter, so stamps are
 * readable as times yet never go backwards and respect causality.
 *
 * Guarantees, for the stamps one instance issues and receives:
 * - monotonic: every `now()` and `receive()` returns a stamp greater than every stamp this
 *   clock returned before, whatever the physical clock does (including going backwards);
 * - causal: a stamp returned by `receive(s)` is greater than `s`;
 * - close to physical time: the physical part is never behind the largest physical time read,
 *   and never more than `maxDriftMs` ahead of it (plus one ms per 2^24 events issued without
 *   the physical clock moving, see below).
 *
 * Logical overflow: when the counter would pass `hlcMaxLogical` (16 777 215 events within one
 * physical ms, or while the physical clock stands still or runs behind a remote stamp) the
 * clock moves its physical part 1 ms ahead and restarts the counter at 0, so stamps stay
 * unique and increasing at the cost of running 1 ms ahead of physical time.
 *
 * One instance per node; calls are synchronous, so a Node process needs no locking.
 */
export class HybridLogicalClock {
  readonly node: string;
  readonly maxDriftMs: number;
  readonly #clock: Pick<Clock, 'now'>;
  #physical: number;
  #logical: number;

  constructor(options: HybridLogicalClockOptions) {
    const resolved = resolveOptions(options);
    this.node = resolved.node;
    this.maxDriftMs = resolved.maxDriftMs;
    this.#clock = resolved.clock;
    this.#physical = resolved.physical;
    this.#logical = resolved.logical;
  }

  /**
   * The clock's current value without ticking: the last stamp issued (or resumed after), or
   * physical 0 before the first event.
   */
  peek(): HlcStamp {
    return { physical: this.#physical, logical: this.#logical, node: this.node };
  }

  /**
   * A local event or a send (publish): a new stamp, greater than every earlier one. Throws
   * `InvalidArgumentError` (field `clock`) only at the end of the encoding's range, year 10889.
   */
  now(): HlcStamp {
    const physical = this.#readPhysical();
    if (physical > this.#physical) this.#set(physical, 0);
    else this.#set(this.#physical, this.#logical + 1);
    return this.peek();
  }

  /**
   * A receive (consume): merges the sender's stamp and returns the receive's own stamp,
   * greater than both the remote stamp and every earlier local one.
   *
   * Throws `ClockDriftError` (and leaves the clock unchanged) when the remote stamp is more than
   * `maxDriftMs` ahead of this node's physical clock; `InvalidArgumentError` when it is malformed,
   * or so close to the end of the encoding's range (`hlcMaxPhysical`) that no stamp fits after it.
   */
  receive(remote: HlcStamp | string): HlcStamp {
    const stamp = typeof remote === 'string' ? parseHlc(remote, 'remote') : remote;
    if (typeof remote !== 'string') assertHlcStamp(stamp, 'remote');
    const physical = this.#readPhysical();
    if (stamp.physical - physical > this.maxDriftMs) {
      throw new ClockDriftError(formatHlc(stamp), stamp.physical, physical, this.maxDriftMs);
    }
    const local = this.#physical;
    const next = Math.max(local, stamp.physical, physical);
    if (next === local && next === stamp.physical) {
      this.#set(next, Math.max(this.#logical, stamp.logical) + 1, stamp);
    } else if (next === local) {
      this.#set(next, this.#logical + 1);
    } else if (next === stamp.physical) {
      this.#set(next, stamp.logical + 1, stamp);
    } else {
      this.#set(next, 0);
    }
    return this.peek();
  }

  /** `culprit` is the stamp that brought the clock to the end of its range, should it get there. */
  #set(physical: number, logical: number, culprit?: HlcStamp): void {
    // Counter overflow: borrow a millisecond rather than repeat or wrap a stamp.
    if (logical > hlcMaxLogical) {
      physical += 1;
      logical = 0;
    }
    // Only a stamp at the end of the encoding's range (year 10889) gets here, accepted with
    // maxDriftMs Infinity or resumed after: refuse, rather than issue a stamp formatHlc refuses.
    if (physical > hlcMaxPhysical) {
      const last = formatHlc({ physical: hlcMaxPhysical, logical: hlcMaxLogical, node: this.node });
      throw culprit === undefined
        ? new InvalidArgumentError('clock', `room for a stamp after ${last}`, formatHlc(this.peek()))
        : new InvalidArgumentError(
            'remote',
            `a stamp this clock can move past (before ${last})`,
            formatHlc(culprit),
          );
    }
    this.#physical = physical;
    this.#logical = logical;
  }

  #readPhysical(): number {
    const now = this.#clock.now();
    if (!Number.isFinite(now) || now < 0 || now > hlcMaxPhysical) {
      throw new InvalidArgumentError('clock.now()', `ms since the epoch in [0, ${hlcMaxPhysical}]`, now);
    }
    return Math.floor(now);
  }
}

function resolveOptions(options: HybridLogicalClockOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', 'an object with at least { node }', options);
  }
  const { node, clock = systemClock, maxDriftMs = defaultMaxDriftMs, resumeAfter } = options;
  if (typeof node !== 'string' || !hlcNodePattern.test(node)) {
    throw new InvalidArgumentError('node', `a node id matching ${String(hlcNodePattern)}`, node);
  }
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') {
    throw new InvalidArgumentError('clock', 'a Clock', clock);
  }
  if (typeof maxDriftMs !== 'number' || Number.isNaN(maxDriftMs) || maxDriftMs < 0) {
    throw new InvalidArgumentError('maxDriftMs', 'a number of ms >= 0 (Infinity to disable)', maxDriftMs);
  }
  let physical = 0;
  let logical = 0;
  if (resumeAfter !== undefined) {
    const stamp = typeof resumeAfter === 'string' ? parseHlc(resumeAfter, 'resumeAfter') : resumeAfter;
    assertHlcStamp(stamp, 'resumeAfter');
    physical = stamp.physical;
    logical = stamp.logical;
  }
  return { node, clock, maxDriftMs, physical, logical };
}
