import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors/index.ts';
import { ManualClock } from '../time/index.ts';
import { watchParent } from './parent-watch.ts';

/** A parent the test moves: `adopt()` is what the kernel does when the parent exits. */
function parentOf(pid: number): { parentPid: () => number; adopt: (by: number) => void } {
  let current = pid;
  return { parentPid: () => current, adopt: (by) => (current = by) };
}

describe('watchParent', () => {
  it('calls back once, at the first look after the parent is gone, naming the parent it started with', async () => {
    const clock = new ManualClock();
    const parent = parentOf(4321);
    const gone: number[] = [];
    const watch = watchParent((pid) => gone.push(pid), {
      clock,
      parentPid: parent.parentPid,
      everyMs: 1_000,
    });
    expect(watch.parent).toBe(4321);
    await clock.advance(5_000);
    expect(gone).toEqual([]);
    parent.adopt(1);
    await clock.advance(999);
    expect(gone).toEqual([]);
    await clock.advance(1);
    expect(gone).toEqual([4321]);
    await clock.advance(10_000);
    expect(gone).toEqual([4321]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('looks no more once stopped', async () => {
    const clock = new ManualClock();
    const parent = parentOf(4321);
    const gone: number[] = [];
    const watch = watchParent((pid) => gone.push(pid), { clock, parentPid: parent.parentPid });
    await clock.advance(2_000);
    watch.stop();
    expect(clock.pendingTimers).toBe(0);
    parent.adopt(1);
    await clock.advance(10_000);
    expect(gone).toEqual([]);
    watch.stop();
  });

  it('refuses an interval that is not a positive integer, by name', () => {
    for (const everyMs of [0, -1, 1.5, Number.NaN])
      expect(() => watchParent(() => undefined, { everyMs, clock: new ManualClock() })).toThrow(
        InvalidArgumentError,
      );
    expect(() => watchParent(() => undefined, { everyMs: 0 })).toThrow(/everyMs/);
  });

  it('watches the real parent by default', () => {
    const clock = new ManualClock();
    const watch = watchParent(() => undefined, { clock });
    expect(watch.parent).toBe(process.ppid);
    watch.stop();
  });
});
