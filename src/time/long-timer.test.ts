import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SystemClock } from './clock.ts';
import { LongTimer, maxTimerMs } from './long-timer.ts';

const day = 86_400_000;

// Node's own timers, faked (with Date.now) by vitest: the bug is in how SystemClock hands a
// delay to them, so this is the clock under test, not the ManualClock.
describe('SystemClock: delays longer than Node timers take', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a 30-day timer fires after 30 days, not after 1 ms', () => {
    const clock = new SystemClock();
    const fn = vi.fn();
    clock.setTimeout(fn, 30 * day);
    vi.advanceTimersByTime(1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(30 * day - 2);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(60 * day);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('clearTimeout stops a long timer between its steps', () => {
    const clock = new SystemClock();
    const fn = vi.fn();
    const handle = clock.setTimeout(fn, 2 * maxTimerMs + 5);
    vi.advanceTimersByTime(maxTimerMs + 1);
    clock.clearTimeout(handle);
    vi.advanceTimersByTime(3 * maxTimerMs);
    expect(fn).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('an endless delay never fires; a delay Node takes is one Node timer, as before', () => {
    const clock = new SystemClock();
    const never = vi.fn();
    clock.setTimeout(never, Infinity);
    vi.advanceTimersByTime(10 * maxTimerMs);
    expect(never).not.toHaveBeenCalled();
    const soon = vi.fn();
    expect(clock.setTimeout(soon, 5)).not.toBeInstanceOf(LongTimer);
    vi.advanceTimersByTime(5);
    expect(soon).toHaveBeenCalledTimes(1);
  });

  it('ref() and unref() carry over to every step', () => {
    const refs: boolean[] = [];
    const timer = new LongTimer(() => undefined, 25, 10).unref();
    const spy = vi.spyOn(globalThis, 'setTimeout');
    vi.advanceTimersByTime(10);
    refs.push((spy.mock.results.at(-1)?.value as NodeJS.Timeout).hasRef());
    timer.ref();
    vi.advanceTimersByTime(10);
    refs.push((spy.mock.results.at(-1)?.value as NodeJS.Timeout).hasRef());
    spy.mockRestore();
    expect(refs).toEqual([false, true]);
    timer.clear();
  });
});
