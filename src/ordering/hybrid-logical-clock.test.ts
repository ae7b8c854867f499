import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { ManualClock, referenceInstant } from '../time/index.ts';
import { ClockDriftError } from './clock-drift-error.ts';
import {
  compareHlc,
  formatHlc,
  hlcMaxLogical,
  hlcMaxPhysical,
  parseHlc,
  type HlcStamp,
} from './hlc-stamp.ts';
import { HybridLogicalClock, defaultMaxDriftMs } from './hybrid-logical-clock.ts';
import { propertyRuns } from '../testing/property-runs.ts';

/** A physical clock a test can set anywhere, backwards included (ManualClock only moves forward). */
class SettableClock {
  constructor(public time: number) {}
  now(): number {
    return this.time;
  }
}

const t0 = referenceInstant;

describe('HybridLogicalClock', () => {
  it('follows physical time, counting events within one millisecond', async () => {
    const clock = new ManualClock();
    const hlc = new HybridLogicalClock({ node: 'n1', clock });
    expect(hlc.now()).toEqual({ physical: t0, logical: 0, node: 'n1' });
    expect(hlc.now()).toEqual({ physical: t0, logical: 1, node: 'n1' });
    await clock.advance(5);
    expect(hlc.now()).toEqual({ physical: t0 + 5, logical: 0, node: 'n1' });
    expect(hlc.peek()).toEqual({ physical: t0 + 5, logical: 0, node: 'n1' });
  });

  it('never goes back when the physical clock does', () => {
    const clock = new SettableClock(t0 + 1000);
    const hlc = new HybridLogicalClock({ node: 'n1', clock });
    const before = hlc.now();
    clock.time = t0; // NTP stepped the clock back a second
    const after = hlc.now();
    expect(after).toEqual({ physical: t0 + 1000, logical: 1, node: 'n1' });
    expect(compareHlc(after, before)).toBe(1);
  });

  it('merges a remote stamp on receive, ahead of both', async () => {
    const clock = new ManualClock();
    const hlc = new HybridLogicalClock({ node: 'n1', clock });
    hlc.now();
    // The sender's clock runs 200 ms ahead.
    const remote = { physical: t0 + 200, logical: 7, node: 'n2' };
    expect(hlc.receive(remote)).toEqual({ physical: t0 + 200, logical: 8, node: 'n1' });
    expect(hlc.now()).toEqual({ physical: t0 + 200, logical: 9, node: 'n1' });
    // Once physical time passes the remote's, the counter resets.
    await clock.advance(300);
    expect(hlc.now()).toEqual({ physical: t0 + 300, logical: 0, node: 'n1' });
    // A stamp from the past moves only the counter.
    expect(hlc.receive(formatHlc({ physical: t0, logical: 99, node: 'n2' }))).toEqual({
      physical: t0 + 300,
      logical: 1,
      node: 'n1',
    });
    // Same physical part on both sides: the larger counter wins.
    expect(hlc.receive({ physical: t0 + 300, logical: 40, node: 'n2' })).toEqual({
      physical: t0 + 300,
      logical: 41,
      node: 'n1',
    });
  });

  it('refuses a stamp more than maxDriftMs ahead, with a typed error, leaving the clock unchanged', async () => {
    const clock = new ManualClock();
    const hlc = new HybridLogicalClock({ node: 'n1', clock, maxDriftMs: 1000 });
    // Exactly at the bound is accepted.
    expect(hlc.receive({ physical: t0 + 1000, logical: 0, node: 'n2' })).toEqual({
      physical: t0 + 1000,
      logical: 1,
      node: 'n1',
    });
    const tooFar = { physical: t0 + 1001, logical: 0, node: 'n2' };
    let caught: unknown;
    try {
      hlc.receive(tooFar);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ClockDriftError);
    expect(isKeelError(caught, 'KEEL_CLOCK_DRIFT')).toBe(true);
    const drift = caught as ClockDriftError;
    expect(drift.driftMs).toBe(1001);
    expect(drift.maxDriftMs).toBe(1000);
    expect(drift.details).toMatchObject({ remotePhysical: t0 + 1001, localPhysical: t0, driftMs: 1001 });
    expect(drift.message).toMatch(/000000\.n2 is 1001 ms ahead of this node's clock; at most 1000 ms/);
    expect(hlc.peek()).toEqual({ physical: t0 + 1000, logical: 1, node: 'n1' });
    // Retryable: once local time has caught up, the same stamp is accepted.
    await clock.advance(1);
    expect(hlc.receive(tooFar)).toEqual({ physical: t0 + 1001, logical: 1, node: 'n1' });
  });

  it('defaults the drift bound to one minute; Infinity turns it off', () => {
    const clock = new ManualClock();
    const hlc = new HybridLogicalClock({ node: 'n1', clock });
    expect(hlc.maxDriftMs).toBe(defaultMaxDriftMs);
    expect(defaultMaxDriftMs).toBe(60_000);
    expect(() => hlc.receive({ physical: t0 + 60_000, logical: 0, node: 'n2' })).not.toThrow();
    expect(() => hlc.receive({ physical: t0 + 60_001, logical: 0, node: 'n2' })).toThrow(ClockDriftError);
    const open = new HybridLogicalClock({ node: 'n1', clock, maxDriftMs: Number.POSITIVE_INFINITY });
    expect(open.receive({ physical: t0 + 86_400_000, logical: 0, node: 'n2' }).physical).toBe(
      t0 + 86_400_000,
    );
  });

  it('on logical overflow moves the physical part 1 ms ahead instead of repeating a stamp', () => {
    const clock = new SettableClock(t0);
    const hlc = new HybridLogicalClock({ node: 'n1', clock });
    const remote = { physical: t0, logical: hlcMaxLogical, node: 'n2' };
    const received = hlc.receive(remote);
    expect(received).toEqual({ physical: t0 + 1, logical: 0, node: 'n1' });
    expect(compareHlc(received, remote)).toBe(1);
    expect(hlc.now()).toEqual({ physical: t0 + 1, logical: 1, node: 'n1' });
    // And from a counter this clock ran up itself.
    const busy = new HybridLogicalClock({
      node: 'n1',
      clock,
      resumeAfter: { physical: t0, logical: hlcMaxLogical, node: 'n1' },
    });
    expect(busy.now()).toEqual({ physical: t0 + 1, logical: 0, node: 'n1' });
  });

  it('at the end of the encoding refuses a stamp with a typed error, never issuing one formatHlc refuses', () => {
    const clock = new SettableClock(t0);
    const last = formatHlc({ physical: hlcMaxPhysical, logical: hlcMaxLogical, node: 'n2' });
    // The drift guard off: nothing else stands between the clock and a stamp from year 10889.
    const open = new HybridLogicalClock({ node: 'n1', clock, maxDriftMs: Number.POSITIVE_INFINITY });
    const before = open.now();
    const refused = (() => {
      try {
        return open.receive(last);
      } catch (error) {
        return error;
      }
    })();
    expect(isKeelError(refused, 'KEEL_INVALID_ARGUMENT')).toBe(true);
    expect((refused as Error).message).toMatch(/^remote: .*ffffffffffff\.ffffff\.n2/);
    expect(open.peek()).toEqual(before);
    // Resumed at the last stamp there is: every stamp after it is refused, the clock unchanged.
    const resumed = new HybridLogicalClock({ node: 'n1', clock, resumeAfter: last });
    expect(() => resumed.now()).toThrow(/^clock: expected room for a stamp/);
    expect(formatHlc(resumed.peek())).toBe('ffffffffffff.ffffff.n1');
  });

  it('resumes after a persisted stamp, so a restart with a clock set back still moves forward', () => {
    const clock = new SettableClock(t0 - 5000);
    const last = formatHlc({ physical: t0, logical: 12, node: 'n1' });
    const hlc = new HybridLogicalClock({ node: 'n1', clock, resumeAfter: last });
    expect(hlc.peek()).toEqual({ physical: t0, logical: 12, node: 'n1' });
    expect(hlc.now()).toEqual({ physical: t0, logical: 13, node: 'n1' });
  });

  it('validates options, remote stamps and the clock reading, naming the field', () => {
    const clock = new ManualClock();
    expect(() => new HybridLogicalClock({ node: '', clock })).toThrow(/node: expected a node id/);
    expect(() => new HybridLogicalClock({ node: 'a b', clock })).toThrow(/node/);
    expect(() => new HybridLogicalClock({ node: 'n', clock, maxDriftMs: -1 })).toThrow(/maxDriftMs/);
    expect(() => new HybridLogicalClock({ node: 'n', clock, maxDriftMs: Number.NaN })).toThrow(/maxDriftMs/);
    expect(() => new HybridLogicalClock({ node: 'n', clock, resumeAfter: 'x' })).toThrow(/resumeAfter/);
    expect(() => new HybridLogicalClock({ node: 'n', clock: {} as ManualClock })).toThrow(/clock/);
    const hlc = new HybridLogicalClock({ node: 'n', clock });
    expect(() => hlc.receive('garbage')).toThrow(/remote: expected an HLC stamp/);
    expect(() => hlc.receive({ physical: 1, logical: -1, node: 'n2' })).toThrow(/remote\.logical/);
    const broken = new HybridLogicalClock({ node: 'n', clock: { now: () => Number.NaN } });
    expect(() => broken.now()).toThrow(/clock\.now\(\)/);
  });

  it('uses the system clock by default', () => {
    const hlc = new HybridLogicalClock({ node: 'n1' });
    const stamp = hlc.now();
    expect(Math.abs(stamp.physical - Date.now())).toBeLessThan(60_000);
  });

  describe('laws, under any interleaving of local events, sends, receives and clock steps', () => {
    const nodes = ['n0', 'n1', 'n2'] as const;
    type Op =
      | { kind: 'step'; node: number; deltaMs: number }
      | { kind: 'local'; node: number }
      | { kind: 'send'; from: number; to: number }
      | { kind: 'deliver'; pick: number }
      | { kind: 'foreign'; node: number; aheadMs: number; logical: number };
    const node = fc.nat(nodes.length - 1);
    const op: fc.Arbitrary<Op> = fc.oneof(
      // Physical clocks jump both ways, including by more than the drift bound.
      fc.record({
        kind: fc.constant('step' as const),
        node,
        deltaMs: fc.integer({ min: -90_000, max: 90_000 }),
      }),
      fc.record({ kind: fc.constant('step' as const), node, deltaMs: fc.integer({ min: -3, max: 3 }) }),
      fc.record({ kind: fc.constant('local' as const), node }),
      fc.record({ kind: fc.constant('send' as const), from: node, to: node }),
      fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat() }),
      // A stamp from a node outside the simulation, anywhere from far behind to beyond the bound.
      fc.record({
        kind: fc.constant('foreign' as const),
        node,
        aheadMs: fc.integer({ min: -1_000_000, max: 120_000 }),
        logical: fc.nat(1000),
      }),
    );
    // Clocks a few ms apart (so physical parts collide and counters decide) or tens of seconds apart.
    const skew = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -40_000, max: 40_000 }));
    const skews = fc.tuple(skew, skew, skew);

    it('monotonic per node, causal across nodes, within the drift bound, and unchanged by a refused stamp', () => {
      fc.assert(
        fc.property(skews, fc.array(op, { maxLength: 150 }), (skew, ops) => {
          const maxDriftMs = defaultMaxDriftMs;
          const physical = skew.map((s) => new SettableClock(t0 + s));
          const clocks = nodes.map(
            (name, i) => new HybridLogicalClock({ node: name, clock: physical[i]!, maxDriftMs }),
          );
          const last: (HlcStamp | undefined)[] = nodes.map(() => undefined);
          // The largest physical time each node read, and the largest it accepted from a remote stamp.
          const maxRead = physical.map(() => Number.NEGATIVE_INFINITY);
          const maxAccepted = physical.map(() => Number.NEGATIVE_INFINITY);
          const inFlight: { to: number; wire: string }[] = [];

          const issued = (i: number, stamp: HlcStamp): void => {
            maxRead[i] = Math.max(maxRead[i]!, physical[i]!.time);
            const previous = last[i];
            if (previous !== undefined) expect(compareHlc(stamp, previous)).toBe(1);
            expect(stamp.node).toBe(nodes[i]);
            // Never behind the physical time read, never ahead of anything seen, never past the bound.
            expect(stamp.physical).toBeGreaterThanOrEqual(maxRead[i]);
            expect(stamp.physical).toBeLessThanOrEqual(Math.max(maxRead[i], maxAccepted[i]!));
            expect(stamp.physical - maxRead[i]).toBeLessThanOrEqual(maxDriftMs);
            last[i] = stamp;
          };
          const receive = (i: number, remote: HlcStamp, wire: HlcStamp | string = remote): void => {
            const before = clocks[i]!.peek();
            if (remote.physical - physical[i]!.time > maxDriftMs) {
              expect(() => clocks[i]!.receive(wire)).toThrow(ClockDriftError);
              expect(clocks[i]!.peek()).toEqual(before);
              return;
            }
            maxAccepted[i] = Math.max(maxAccepted[i]!, remote.physical);
            const stamp = clocks[i]!.receive(wire);
            expect(compareHlc(stamp, remote)).toBe(1);
            issued(i, stamp);
          };

          for (const o of ops) {
            switch (o.kind) {
              case 'step':
                physical[o.node]!.time = Math.max(0, physical[o.node]!.time + o.deltaMs);
                break;
              case 'local':
                issued(o.node, clocks[o.node]!.now());
                break;
              case 'send': {
                const stamp = clocks[o.from]!.now();
                issued(o.from, stamp);
                // On the wire as the encoded string, as an envelope carries it.
                inFlight.push({ to: o.to, wire: formatHlc(stamp) });
                break;
              }
              case 'deliver':
                if (inFlight.length > 0) {
                  const [message] = inFlight.splice(o.pick % inFlight.length, 1);
                  receive(message!.to, parseHlc(message!.wire), message!.wire);
                }
                break;
              case 'foreign':
                receive(o.node, {
                  physical: Math.max(0, physical[o.node]!.time + o.aheadMs),
                  logical: o.logical,
                  node: 'outside',
                });
                break;
            }
          }
        }),
        { numRuns: propertyRuns(300) },
      );
    });

    it('a stamp received as its string encoding merges exactly like the stamp itself', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: -70_000, max: 70_000 }),
          fc.nat(hlcMaxLogical),
          fc.integer({ min: -5, max: 5 }),
          (aheadMs, logical, localSteps) => {
            const make = (): HybridLogicalClock => {
              const hlc = new HybridLogicalClock({ node: 'n1', clock: new SettableClock(t0) });
              for (let i = 0; i < Math.abs(localSteps); i++) hlc.now();
              return hlc;
            };
            const remote = { physical: t0 + aheadMs, logical, node: 'n2' };
            const a = make();
            const b = make();
            let fromStamp: unknown;
            let fromString: unknown;
            try {
              fromStamp = a.receive(remote);
            } catch (error) {
              fromStamp = (error as Error).name;
            }
            try {
              fromString = b.receive(formatHlc(remote));
            } catch (error) {
              fromString = (error as Error).name;
            }
            expect(fromString).toEqual(fromStamp);
          },
        ),
      );
    });
  });
});
