import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { DeadlineQueue, type Deadline } from './deadline-queue.ts';

function entry(at: number, expired: number[]): Deadline {
  return { at, done: false, expire: () => expired.push(at) };
}

describe('DeadlineQueue', () => {
  it('expires pending entries in order with one timer, skipping settled ones', async () => {
    const clock = new ManualClock(0);
    const queue = new DeadlineQueue(clock);
    const expired: number[] = [];
    const entries = [10, 20, 30, 40].map((at) => entry(at, expired));
    for (const e of entries) queue.add(e);
    expect(clock.pendingTimers).toBe(1);
    entries[1]!.done = true;
    await clock.advance(30);
    expect(expired).toEqual([10, 30]);
    await clock.advance(10);
    expect(expired).toEqual([10, 30, 40]);
    expect(queue.size).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('frees settled entries as they complete, even behind a slow one once it settles', () => {
    const clock = new ManualClock(0);
    const queue = new DeadlineQueue(clock);
    const slow = entry(100, []);
    queue.add(slow);
    const fast = Array.from({ length: 5000 }, () => entry(100, []));
    for (const e of fast) {
      queue.add(e);
      e.done = true;
      queue.compact();
    }
    expect(queue.size).toBe(5001);
    slow.done = true;
    queue.compact();
    expect(queue.size).toBe(0);
  });

  it('dispose clears the timer', () => {
    const clock = new ManualClock(0);
    const queue = new DeadlineQueue(clock);
    queue.add(entry(10, []));
    queue.dispose();
    expect(clock.pendingTimers).toBe(0);
  });
});
