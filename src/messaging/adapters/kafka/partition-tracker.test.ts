import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../../envelope.ts';
import { PartitionTracker, type TrackedRecord } from './partition-tracker.ts';

function record(offset: number, key: string | null, dueAt = 0): TrackedRecord<number> {
  return {
    offset: BigInt(offset),
    envelope: createEnvelope({ type: 't.v1', payload: { offset }, key }),
    message: offset,
    attempt: 1,
    dueAt,
    state: 'waiting',
    firstFailedAt: undefined,
  };
}

function claim(tracker: PartitionTracker<number>, now = 0, max = 100): number[] {
  const out: TrackedRecord<number>[] = [];
  tracker.claim(now, max, out);
  return out.map((r) => r.message);
}

describe('PartitionTracker', () => {
  it('hands out one record per key at a time, other keys in parallel, unkeyed ones freely', () => {
    const tracker = new PartitionTracker<number>('t', 0);
    const records = [record(0, 'a'), record(1, 'b'), record(2, 'a'), record(3, null), record(4, null)];
    for (const r of records) tracker.add(r);
    expect(claim(tracker)).toEqual([0, 1, 3, 4]);
    expect(claim(tracker)).toEqual([]);
    tracker.settle(records[0]!);
    expect(claim(tracker)).toEqual([2]);
  });

  it('keeps a retried record ahead of its key until it is due, without blocking other keys', () => {
    const tracker = new PartitionTracker<number>('t', 0);
    const [a0, a1, b0] = [record(0, 'a'), record(1, 'a'), record(2, 'b')];
    for (const r of [a0, a1, b0]) tracker.add(r);
    expect(claim(tracker, 0)).toEqual([0, 2]);
    a0.state = 'waiting';
    a0.dueAt = 100;
    expect(claim(tracker, 50)).toEqual([]);
    expect(tracker.nextDueAt(50)).toBe(100);
    expect(claim(tracker, 100)).toEqual([0]);
  });

  it('commits only the finished prefix: a slow record holds the commit point back', () => {
    const tracker = new PartitionTracker<number>('t', 0);
    const records = [record(10, 'a'), record(11, 'b'), record(12, 'c')];
    for (const r of records) tracker.add(r);
    claim(tracker);
    expect(tracker.settle(records[1]!)).toBe(0);
    expect(tracker.settle(records[2]!)).toBe(0);
    expect(tracker.pendingCommit()).toBeUndefined();
    expect(tracker.settle(records[0]!)).toBe(3);
    const target = tracker.pendingCommit();
    expect(target?.offset).toBe(12n);
    tracker.committed(target!);
    expect(tracker.pendingCommit()).toBeUndefined();
    expect(tracker.size).toBe(0);
  });

  it('drops records fetched again after a rebalance', () => {
    const tracker = new PartitionTracker<number>('t', 0);
    expect(tracker.add(record(5, 'a'))).toBe(true);
    expect(tracker.add(record(6, 'a'))).toBe(true);
    expect(tracker.add(record(5, 'a'))).toBe(false);
    expect(tracker.add(record(7, 'a'))).toBe(true);
    expect(tracker.size).toBe(3);
  });

  it('stops at max', () => {
    const tracker = new PartitionTracker<number>('t', 0);
    for (let i = 0; i < 5; i++) tracker.add(record(i, `k${i}`));
    expect(claim(tracker, 0, 2)).toEqual([0, 1]);
    expect(claim(tracker, 0, 2)).toEqual([2, 3]);
  });
});
