import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { VectorClock, type VectorClockJson, type VectorOrder } from './vector-clock.ts';

const node = fc.constantFrom('a', 'b', 'c', 'd');
const vector = (max = 4): fc.Arbitrary<VectorClock> =>
  fc.dictionary(node, fc.nat(max), { maxKeys: 4 }).map((counters) => VectorClock.of(counters));

const atMost = (a: VectorClock, b: VectorClock): boolean => {
  const order = a.compare(b);
  return order === 'before' || order === 'equal';
};

const mirror: Record<VectorOrder, VectorOrder> = {
  before: 'after',
  after: 'before',
  equal: 'equal',
  concurrent: 'concurrent',
};

describe('VectorClock', () => {
  it('increments one node, merges by taking each larger counter, and compares', () => {
    const a1 = VectorClock.empty.increment('a');
    const a2 = a1.increment('a');
    const b1 = VectorClock.empty.increment('b');
    expect(a2.toJSON()).toEqual({ a: 2 });
    expect(a1.compare(a2)).toBe('before');
    expect(a2.compare(a1)).toBe('after');
    expect(a2.compare(b1)).toBe('concurrent');
    const received = a2.merge(b1).increment('b');
    expect(received.toJSON()).toEqual({ a: 2, b: 2 });
    expect(a2.compare(received)).toBe('before');
    expect(received.compare(VectorClock.of({ b: 2, a: 2 }))).toBe('equal');
  });

  it('is immutable: increment and merge leave the original alone', () => {
    const a = VectorClock.of({ a: 1 });
    a.increment('a');
    a.merge(VectorClock.of({ b: 3 }));
    expect(a.toJSON()).toEqual({ a: 1 });
  });

  it('treats a missing node as 0 and serialises without zeros, keys sorted', () => {
    const clock = VectorClock.of({ c: 1, a: 0, b: 2 });
    expect(clock.get('a')).toBe(0);
    expect(clock.get('zzz')).toBe(0);
    expect(clock.nodes).toEqual(['b', 'c']);
    expect(JSON.stringify(clock)).toBe('{"b":2,"c":1}');
    expect(
      clock.equals(
        VectorClock.of([
          ['b', 2],
          ['c', 1],
        ]),
      ),
    ).toBe(true);
    expect(VectorClock.of({}).compare(VectorClock.of({ a: 0 }))).toBe('equal');
  });

  it('parses its JSON form back and rejects malformed input naming the field', () => {
    const clock = VectorClock.fromJSON(JSON.parse('{"n1":3,"__proto__":2}'));
    expect(clock.get('n1')).toBe(3);
    expect(clock.get('__proto__')).toBe(2);
    expect(VectorClock.fromJSON(JSON.parse(JSON.stringify(clock))).equals(clock)).toBe(true);
    expect(() => VectorClock.fromJSON([1])).toThrow(/vectorClock: expected an object/);
    expect(() => VectorClock.fromJSON(null)).toThrow(/vectorClock/);
    expect(() => VectorClock.fromJSON({ a: '1' })).toThrow(/vectorClock\.a: expected a safe integer >= 0/);
    expect(() => VectorClock.fromJSON({ a: -1 })).toThrow(/vectorClock\.a/);
    expect(() => VectorClock.fromJSON({ a: 1.5 })).toThrow(/vectorClock\.a/);
    expect(() => VectorClock.fromJSON({ '': 1 })).toThrow(/node: expected a non-empty string/);
    try {
      VectorClock.empty.increment('');
    } catch (error) {
      expect(isKeelError(error, 'KEEL_INVALID_ARGUMENT')).toBe(true);
    }
  });

  it('refuses a JSON form or nothing where a clock is meant, with a typed error naming it', () => {
    const clock = VectorClock.of({ a: 1 });
    const json = clock.toJSON() as unknown as VectorClock;
    for (const call of [() => clock.compare(json), () => clock.merge(json), () => clock.equals(json)]) {
      expect(call).toThrow(/^other: expected a VectorClock/);
    }
    expect(() => VectorClock.of(null as unknown as VectorClockJson)).toThrow(/^counters: expected an object/);
  });

  describe('compare is a partial order', () => {
    it('reflexive: a clock equals itself and its own JSON round trip', () => {
      fc.assert(
        fc.property(vector(), (a) => {
          expect(a.compare(a)).toBe('equal');
          expect(a.compare(VectorClock.fromJSON(JSON.parse(JSON.stringify(a))))).toBe('equal');
        }),
      );
    });

    it('antisymmetric: a <= b and b <= a only when equal; the reverse comparison mirrors', () => {
      fc.assert(
        fc.property(vector(2), vector(2), (a, b) => {
          expect(b.compare(a)).toBe(mirror[a.compare(b)]);
          if (atMost(a, b) && atMost(b, a)) expect(a.compare(b)).toBe('equal');
          if (a.compare(b) === 'equal') expect(JSON.stringify(a)).toBe(JSON.stringify(b));
        }),
      );
    });

    it('transitive: a <= b and b <= c imply a <= c', () => {
      fc.assert(
        fc.property(vector(1), vector(1), vector(1), (a, b, c) => {
          if (atMost(a, b) && atMost(b, c)) expect(atMost(a, c)).toBe(true);
          if (a.compare(b) === 'before' && b.compare(c) === 'before') expect(a.compare(c)).toBe('before');
        }),
      );
      // Chains built on purpose, so the premise always holds.
      fc.assert(
        fc.property(vector(), vector(), vector(), node, (a, x, y, n) => {
          const b = a.merge(x);
          const c = b.merge(y).increment(n);
          expect(atMost(a, b)).toBe(true);
          expect(a.compare(c)).toBe('before');
        }),
      );
    });
  });

  describe('merge is a join', () => {
    it('commutative, associative and idempotent', () => {
      fc.assert(
        fc.property(vector(), vector(), vector(), (a, b, c) => {
          expect(a.merge(b).equals(b.merge(a))).toBe(true);
          expect(
            a
              .merge(b)
              .merge(c)
              .equals(a.merge(b.merge(c))),
          ).toBe(true);
          expect(a.merge(a).equals(a)).toBe(true);
        }),
      );
    });

    it('the least upper bound: above both inputs, below any other clock above both', () => {
      fc.assert(
        fc.property(vector(2), vector(2), vector(3), (a, b, c) => {
          const joined = a.merge(b);
          expect(atMost(a, joined)).toBe(true);
          expect(atMost(b, joined)).toBe(true);
          if (atMost(a, c) && atMost(b, c)) expect(atMost(joined, c)).toBe(true);
        }),
      );
    });

    it('increment moves strictly after', () => {
      fc.assert(
        fc.property(vector(), node, (a, n) => {
          expect(a.compare(a.increment(n))).toBe('before');
        }),
      );
    });
  });

  it('characterises causality: compare matches happened-before in any run of message passing', () => {
    type Op =
      | { kind: 'local'; node: number }
      | { kind: 'send'; from: number }
      | { kind: 'deliver'; to: number; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('local' as const), node: fc.nat(2) }),
      fc.record({ kind: fc.constant('send' as const), from: fc.nat(2) }),
      fc.record({ kind: fc.constant('deliver' as const), to: fc.nat(2), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const names = ['a', 'b', 'c'];
        // The causal history of each event: the ids of every event that happened before it, and itself.
        type Event = { id: number; clock: VectorClock; history: Set<number> };
        const events: Event[] = [];
        const state: Omit<Event, 'id'>[] = names.map(() => ({
          clock: VectorClock.empty,
          history: new Set<number>(),
        }));
        const inFlight: Event[] = [];
        const record = (i: number, clock: VectorClock, history: Set<number>): void => {
          const id = events.length;
          const own = new Set(history).add(id);
          state[i] = { clock, history: own };
          events.push({ id, clock, history: own });
        };
        for (const o of ops) {
          if (o.kind === 'local' || o.kind === 'send') {
            const i = o.kind === 'local' ? o.node : o.from;
            record(i, state[i]!.clock.increment(names[i]!), state[i]!.history);
            if (o.kind === 'send') inFlight.push(events[events.length - 1]!);
          } else if (inFlight.length > 0) {
            const [message] = inFlight.splice(o.pick % inFlight.length, 1);
            const here = state[o.to]!;
            const history = new Set([...here.history, ...message!.history]);
            record(o.to, here.clock.merge(message!.clock).increment(names[o.to]!), history);
          }
        }
        for (const e of events) {
          for (const f of events) {
            const expected: VectorOrder =
              e === f
                ? 'equal'
                : f.history.has(e.id)
                  ? 'before'
                  : e.history.has(f.id)
                    ? 'after'
                    : 'concurrent';
            expect(e.clock.compare(f.clock)).toBe(expected);
          }
        }
      }),
    );
  });
});
