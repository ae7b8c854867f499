import { describe, expect, it } from 'vitest';
import { ManualClock, referenceInstant } from './manual-clock.ts';
import { sleep } from './sleep.ts';
import { isKeelError } from '../errors/index.ts';

describe('ManualClock', () => {
  it('starts at the reference instant and moves only when advanced', async () => {
    const clock = new ManualClock();
    expect(clock.now()).toBe(referenceInstant);
    await clock.advance(250);
    expect(clock.now()).toBe(referenceInstant + 250);
  });

  it('fires due timers in order of due time, ties in the order they were set', async () => {
    const clock = new ManualClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('c@30'), 30);
    clock.setTimeout(() => fired.push('a@10'), 10);
    clock.setTimeout(() => fired.push('b@10'), 10);
    clock.setTimeout(() => fired.push('d@50'), 50);
    await clock.advance(30);
    expect(fired).toEqual(['a@10', 'b@10', 'c@30']);
    expect(clock.pendingTimers).toBe(1);
  });

  it('sets now to each timer due time while it fires', async () => {
    const clock = new ManualClock(0);
    const seen: number[] = [];
    clock.setTimeout(() => seen.push(clock.now()), 5);
    clock.setTimeout(() => seen.push(clock.now()), 12);
    await clock.advance(100);
    expect(seen).toEqual([5, 12]);
    expect(clock.now()).toBe(100);
  });

  it('fires timers set by awaited continuations within the same advance', async () => {
    const clock = new ManualClock(0);
    const ticks: number[] = [];
    const loop = async (): Promise<void> => {
      for (let i = 0; i < 3; i++) {
        await sleep(10, { clock });
        ticks.push(clock.now());
      }
    };
    const done = loop();
    await clock.advance(35);
    await done;
    expect(ticks).toEqual([10, 20, 30]);
  });

  it('does not fire cleared timers', async () => {
    const clock = new ManualClock();
    let fired = false;
    const handle = clock.setTimeout(() => (fired = true), 10);
    clock.clearTimeout(handle);
    await clock.advance(20);
    expect(fired).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects a negative advance naming the argument', async () => {
    const clock = new ManualClock();
    await expect(clock.advance(-1)).rejects.toThrow(/ms: expected a finite number >= 0/);
  });

  it('runAll fires chained timers and refuses an endless loop', async () => {
    const clock = new ManualClock(0);
    let count = 0;
    const again = (): void => {
      count++;
      clock.setTimeout(again, 1);
    };
    clock.setTimeout(again, 1);
    await expect(clock.runAll(50)).rejects.toThrow(/still 1 timers/);
    expect(count).toBe(50);
  });
});

describe('sleep', () => {
  it('resolves after the delay on the given clock', async () => {
    const clock = new ManualClock(0);
    let done = false;
    const slept = sleep(100, { clock }).then(() => (done = true));
    await clock.advance(99);
    expect(done).toBe(false);
    await clock.advance(1);
    await slept;
    expect(done).toBe(true);
  });

  it('rejects at once with KEEL_ABORTED when the signal aborts, and clears its timer', async () => {
    const clock = new ManualClock(0);
    const controller = new AbortController();
    const slept = sleep(10_000, { clock, signal: controller.signal });
    controller.abort(new Error('shutdown'));
    const error: unknown = await slept.catch((e: unknown) => e);
    expect(isKeelError(error, 'KEEL_ABORTED')).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects without setting a timer when the signal is already aborted', async () => {
    const clock = new ManualClock(0);
    await expect(sleep(10, { clock, signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'KEEL_ABORTED',
    });
    expect(clock.pendingTimers).toBe(0);
  });
});
