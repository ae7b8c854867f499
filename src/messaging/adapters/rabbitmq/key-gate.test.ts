import { describe, expect, it } from 'vitest';
import type { Delivery } from '../../delivery-source.ts';
import { createEnvelope } from '../../envelope.ts';
import { KeyGate } from './key-gate.ts';
import { fnv1a32, partitionOf, partitionQueueNames } from './partitions.ts';

function delivery(key: string | null, n: number, attempt = 1): Delivery {
  return { envelope: createEnvelope({ type: 't.v1', key, payload: { n } }), attempt };
}

const ns = (list: readonly Delivery[]): number[] => list.map((d) => (d.envelope.payload as { n: number }).n);

describe('KeyGate', () => {
  it('hands out one delivery per key at a time, in arrival order; other keys and keyless ones go on', () => {
    const gate = new KeyGate<Delivery>();
    const all = [delivery('a', 0), delivery('a', 1), delivery('b', 2), delivery(null, 3), delivery(null, 4)];
    for (const d of all) gate.add(d);
    expect(ns(gate.claim(0, 10))).toEqual([0, 2, 3, 4]);
    expect(gate.claim(0, 10)).toEqual([]);
    gate.done(all[0]!);
    expect(ns(gate.claim(0, 10))).toEqual([1]);
    expect(gate.size).toBe(4);
  });

  it('claims at most max', () => {
    const gate = new KeyGate<Delivery>();
    for (let n = 0; n < 5; n++) gate.add(delivery(`k${n}`, n));
    expect(ns(gate.claim(0, 2))).toEqual([0, 1]);
    expect(ns(gate.claim(0, 2))).toEqual([2, 3]);
  });

  it('a retried delivery keeps its key until its backoff passes, then goes before its successors', () => {
    const gate = new KeyGate<Delivery>();
    const first = delivery('a', 0);
    gate.add(first);
    gate.add(delivery('a', 1));
    gate.add(delivery('b', 2));
    expect(ns(gate.claim(0, 10))).toEqual([0, 2]);
    const again = { ...first, attempt: 2 };
    gate.retryAt(first, again, 1000);
    expect(gate.claim(999, 10)).toEqual([]);
    const [next] = gate.claim(1000, 10);
    expect(next).toBe(again);
    gate.done(again);
    expect(ns(gate.claim(1000, 10))).toEqual([1]);
  });

  it('a keyless retry waits for its backoff without holding anything else back', () => {
    const gate = new KeyGate<Delivery>();
    const first = delivery(null, 0);
    gate.add(first);
    gate.claim(0, 1);
    gate.add(delivery(null, 1));
    gate.retryAt(first, { ...first, attempt: 2 }, 500);
    expect(ns(gate.claim(0, 10))).toEqual([1]);
    expect(ns(gate.claim(500, 10))).toEqual([0]);
  });

  it('clear forgets everything (the broker took the messages back)', () => {
    const gate = new KeyGate<Delivery>();
    const d = delivery('a', 0);
    gate.add(d);
    gate.claim(0, 1);
    gate.clear();
    expect(gate.holds(d)).toBe(false);
    gate.add(delivery('a', 1));
    expect(ns(gate.claim(0, 1))).toEqual([1]);
  });
});

describe('partitions', () => {
  it('FNV-1a 32 matches the reference vectors', () => {
    expect(fnv1a32('')).toBe(0x811c9dc5);
    expect(fnv1a32('a')).toBe(0xe40c292c);
    expect(fnv1a32('foobar')).toBe(0xbf9cf968);
  });

  it('routes a key always to the same partition, and keyless envelopes by id', () => {
    const a = createEnvelope({ type: 't.v1', key: 'order-1', payload: null });
    const b = createEnvelope({ type: 't.v1', key: 'order-1', payload: null });
    expect(partitionOf(a, 8)).toBe(partitionOf(b, 8));
    expect(partitionOf({ key: null, id: 'x' }, 8)).toBe(fnv1a32('x') % 8);
    expect(partitionQueueNames('orders', 3)).toEqual(['orders.p0', 'orders.p1', 'orders.p2']);
  });
});
