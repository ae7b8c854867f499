import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { LamportClock } from './lamport-clock.ts';

describe('LamportClock', () => {
  it('ticks from its start and reports the last time without ticking', () => {
    const clock = new LamportClock();
    expect(clock.time).toBe(0);
    expect(clock.tick()).toBe(1);
    expect(clock.tick()).toBe(2);
    expect(clock.time).toBe(2);
    expect(new LamportClock(41).tick()).toBe(42);
  });

  it('moves past the larger of its own and the remote time on receive', () => {
    const clock = new LamportClock(5);
    expect(clock.receive(10)).toBe(11);
    expect(clock.receive(3)).toBe(12);
  });

  it('rejects times that are not safe non-negative integers, naming the field', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new LamportClock().receive(bad)).toThrow(/remote: expected a safe integer >= 0/);
      expect(() => new LamportClock(bad)).toThrow(/start/);
    }
    const error: unknown = (() => {
      try {
        new LamportClock().receive(Number.MAX_SAFE_INTEGER);
      } catch (caught) {
        return caught;
      }
    })();
    expect(isKeelError(error, 'KEEL_INVALID_ARGUMENT')).toBe(true);
    // Its own time at the end, resumed there: the remote is not what is wrong.
    expect(() => new LamportClock(Number.MAX_SAFE_INTEGER).tick()).toThrow(/^time: expected a time below/);
    expect(() => new LamportClock(Number.MAX_SAFE_INTEGER).receive(1)).toThrow(/^time: /);
  });

  it('law: receive gives a time greater than both the local and the remote time', () => {
    fc.assert(
      fc.property(fc.nat(1_000_000), fc.nat(1_000_000), (local, remote) => {
        const clock = new LamportClock(local);
        const after = clock.receive(remote);
        expect(after).toBeGreaterThan(local);
        expect(after).toBeGreaterThan(remote);
      }),
    );
  });

  it('law: in any run of sends and receives, a send is earlier than its receive and each node only grows', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('local' as const), node: fc.nat(2) }),
      fc.record({ kind: fc.constant('send' as const), from: fc.nat(2), to: fc.nat(2) }),
      fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const clocks = [new LamportClock(), new LamportClock(), new LamportClock()];
        const inFlight: { to: number; time: number }[] = [];
        for (const o of ops) {
          if (o.kind === 'local') {
            const before = clocks[o.node]!.time;
            expect(clocks[o.node]!.tick()).toBeGreaterThan(before);
          } else if (o.kind === 'send') {
            inFlight.push({ to: o.to, time: clocks[o.from]!.tick() });
          } else if (inFlight.length > 0) {
            const [message] = inFlight.splice(o.pick % inFlight.length, 1);
            const clock = clocks[message!.to]!;
            const before = clock.time;
            const received = clock.receive(message!.time);
            expect(received).toBeGreaterThan(message!.time);
            expect(received).toBeGreaterThan(before);
          }
        }
      }),
    );
  });
});
