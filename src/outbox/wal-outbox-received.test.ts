import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createEnvelope, type Envelope } from '../messaging/index.ts';
import { ReceivedQueue, type Received } from './wal-outbox-received.ts';

let n = 0;
const message = (): Envelope => createEnvelope({ type: 't', payload: n++ });

/** A transaction of `counts[d]` messages to destination `d${d}`, in that order. */
function transaction(counts: number[], lsn: bigint): Received {
  const sends = counts
    .map((count, d) => ({ destination: `d${d}`, messages: Array.from({ length: count }, message) }))
    .filter((send) => send.messages.length > 0);
  return { sends, count: sends.reduce((sum, send) => sum + send.messages.length, 0), lsn };
}

describe('ReceivedQueue', () => {
  it('takes whole transactions in commit order, each destination in order, within the batch size', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.nat({ max: 4 }), { minLength: 1, maxLength: 3 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 12 }),
        (shapes, batchSize) => {
          const queue = new ReceivedQueue();
          const received = shapes.map((counts, i) => transaction(counts, BigInt(100 + i)));
          for (const r of received) queue.push(r);
          const total = received.reduce((sum, r) => sum + r.count, 0);
          expect(queue.held).toBe(total);

          const out = new Map<string, Envelope[]>();
          let lastLsn = 0n;
          for (let batch = queue.take(batchSize); batch !== undefined; batch = queue.take(batchSize)) {
            const largestTx = Math.max(...received.map((r) => r.count));
            expect(batch.count).toBeLessThanOrEqual(Math.max(batchSize, largestTx));
            expect(batch.lsn).toBeGreaterThan(lastLsn);
            lastLsn = batch.lsn;
            for (const send of batch.sends)
              out.set(send.destination, [...(out.get(send.destination) ?? []), ...send.messages]);
            batch.release();
            batch.release(); // a second release changes nothing
          }
          expect(queue.held).toBe(0);
          expect(queue.isEmpty).toBe(true);
          // Every message once, each destination's in the order written.
          const expected = new Map<string, Envelope[]>();
          for (const r of received)
            for (const send of r.sends)
              expected.set(send.destination, [...(expected.get(send.destination) ?? []), ...send.messages]);
          expect(out).toEqual(expected);
          if (received.length > 0) expect(lastLsn).toBe(received.at(-1)!.lsn);
        },
      ),
    );
  });

  it('keeps only the latest of positions in a row; they ride with the transaction after them', () => {
    const queue = new ReceivedQueue();
    queue.push({ sends: [], count: 0, lsn: 10n });
    queue.push({ sends: [], count: 0, lsn: 20n });
    queue.push(transaction([2], 30n));
    queue.push({ sends: [], count: 0, lsn: 40n });
    // The positions ride with the transaction after them, which goes whole though larger than
    // the batch; then the trailing position alone.
    const first = queue.take(1)!;
    expect([first.count, first.lsn]).toEqual([2, 30n]);
    expect(queue.take(1)!.lsn).toBe(40n);
    expect(queue.take(1)).toBeUndefined();
  });

  it('counts a taken batch as held until it is released', () => {
    const queue = new ReceivedQueue();
    queue.push(transaction([3], 1n));
    const batch = queue.take(10)!;
    expect(queue.isEmpty).toBe(true);
    expect(queue.held).toBe(3);
    batch.release();
    expect(queue.held).toBe(0);
  });

  it('stays in order across the compaction of taken items', () => {
    const queue = new ReceivedQueue();
    const ids: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const r = transaction([1], BigInt(i + 1));
      ids.push(r.sends[0]!.messages[0]!.id);
      queue.push(r);
      if (i % 3 === 0) {
        const batch = queue.take(2);
        for (const send of batch?.sends ?? []) for (const m of send.messages) expect(m.id).toBe(ids.shift());
        batch?.release();
      }
    }
    for (let batch = queue.take(7); batch !== undefined; batch = queue.take(7)) {
      for (const send of batch.sends) for (const m of send.messages) expect(m.id).toBe(ids.shift());
    }
    expect(ids).toEqual([]);
  });
});
