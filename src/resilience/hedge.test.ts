import { describe, expect, it } from 'vitest';
import { ManualClock, sleep } from '../time/index.ts';
import { hedge } from './hedge.ts';

describe('hedge', () => {
  it('starts a second attempt after the delay; the first success wins and the loser is aborted', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 50, clock });
    const signals: AbortSignal[] = [];
    const result = policy.execute(async ({ signal, attempt }) => {
      signals.push(signal);
      await sleep(attempt === 1 ? 1000 : 20, { clock, signal });
      return `attempt ${attempt}`;
    });
    await clock.advance(70);
    await expect(result).resolves.toBe('attempt 2');
    expect(signals.map((s) => s.aborted)).toEqual([true, false]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not hedge a fast first attempt', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 50, clock });
    let calls = 0;
    await expect(policy.execute(() => ++calls)).resolves.toBe(1);
    await clock.advance(100);
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('starts the next attempt at once when one fails, and throws the last failure when all fail', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 1000, maxHedges: 2, clock });
    const starts: number[] = [];
    const result = policy.execute(({ attempt }) => {
      starts.push(clock.now());
      return Promise.reject(new Error(`fail ${attempt}`));
    });
    await expect(result).rejects.toThrow('fail 3');
    expect(starts).toEqual([0, 0, 0]);
  });

  it('emits a hedge event per extra attempt', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 10, maxHedges: 2, clock });
    const seen: number[] = [];
    policy.on('hedge', (e) => seen.push(e.attempt));
    const result = policy.execute(({ signal }) => sleep(25, { clock, signal }));
    await clock.advance(25);
    await result;
    expect(seen).toEqual([2, 3]);
  });

  it('aborts every attempt when the caller aborts, and leaves no timer', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 10, maxHedges: 3, clock });
    const controller = new AbortController();
    const signals: AbortSignal[] = [];
    const result = policy.execute(({ signal }) => {
      signals.push(signal);
      return sleep(1000, { clock, signal });
    }, controller.signal);
    const caught = result.catch((e: unknown) => e);
    await clock.advance(15);
    controller.abort(new Error('caller left'));
    expect(await caught).toMatchObject({ code: 'KEEL_ABORTED' });
    expect(signals).toHaveLength(2);
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('starts no hedge after the caller aborted, even when the running attempt ignores its signal', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 10, maxHedges: 2, clock });
    const controller = new AbortController();
    const attempts: boolean[] = [];
    const result = policy.execute(({ signal }) => {
      attempts.push(signal.aborted);
      return sleep(100, { clock }).then(() => 'late');
    }, controller.signal);
    const caught = result.catch((e: unknown) => e);
    await clock.advance(5);
    controller.abort(new Error('caller left'));
    await clock.advance(200);
    // The first attempt's late answer is still returned: its effects happened.
    expect(await caught).toBe('late');
    expect(attempts).toEqual([false]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('hedgeOnFailure off: a caller aborting while the next hedge is due gets AbortedError, no new attempt', async () => {
    const clock = new ManualClock(0);
    const policy = hedge({ delayMs: 10, hedgeOnFailure: false, clock });
    const controller = new AbortController();
    let calls = 0;
    const result = policy.execute(() => {
      calls++;
      return Promise.reject(new Error('down'));
    }, controller.signal);
    const caught = result.catch((e: unknown) => e);
    await clock.advance(5);
    controller.abort(new Error('caller left'));
    await clock.advance(10);
    expect(await caught).toMatchObject({ code: 'KEEL_ABORTED' });
    expect(calls).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects bad options naming each one', () => {
    expect(() => hedge({ delayMs: -1 })).toThrow(/delayMs/);
    expect(() => hedge({ delayMs: 1, maxHedges: -1 })).toThrow(/maxHedges/);
  });
});
