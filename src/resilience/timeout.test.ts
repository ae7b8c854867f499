import { describe, expect, it } from 'vitest';
import { sleep, ManualClock, type Clock, type TimerHandle } from '../time/index.ts';
import { TimeoutError } from './errors.ts';
import { timeout } from './timeout.ts';

/** A manual clock whose handles have Node's ref()/unref(), to see which timers hold a process open. */
class RefCountingClock implements Clock {
  readonly manual = new ManualClock(0);
  readonly #live = new Set<{ refed: boolean }>();
  now(): number {
    return this.manual.now();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const live = this.#live;
    const handle = {
      refed: true,
      inner: this.manual.setTimeout(() => {
        live.delete(handle);
        fn();
      }, ms),
      ref: () => (handle.refed = true),
      unref: () => (handle.refed = false),
    };
    live.add(handle);
    return handle;
  }
  clearTimeout(handle: TimerHandle): void {
    this.#live.delete(handle as { refed: boolean });
    this.manual.clearTimeout((handle as { inner: TimerHandle }).inner);
  }
  /** Timers that would keep a Node process from exiting. */
  get holdingOpen(): number {
    return [...this.#live].filter((h) => h.refed).length;
  }
}

describe('timeout', () => {
  it('cooperative: aborts the work through its signal and rejects with TimeoutError', async () => {
    const clock = new ManualClock(0);
    const policy = timeout(1000, { clock });
    let reason: unknown;
    const result = policy.execute(({ signal }) =>
      sleep(60_000, { clock, signal }).catch((e: unknown) => {
        reason = signal.reason;
        throw e;
      }),
    );
    const caught = result.catch((e: unknown) => e);
    await clock.advance(1000);
    const error = await caught;
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as TimeoutError).code).toBe('KEEL_TIMEOUT');
    expect(reason).toBeInstanceOf(TimeoutError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('cooperative: returns a result that arrives before the deadline, without aborting', async () => {
    const clock = new ManualClock(0);
    const policy = timeout(1000, { clock });
    let signal: AbortSignal | undefined;
    const result = policy.execute(async (context) => {
      signal = context.signal;
      await sleep(999, { clock });
      return 'fast enough';
    });
    await clock.advance(999);
    await expect(result).resolves.toBe('fast enough');
    await clock.advance(10);
    expect(signal?.aborted).toBe(false);
  });

  it('aggressive: rejects at the deadline while work that ignores the signal still runs', async () => {
    const clock = new ManualClock(0);
    const policy = timeout(100, { mode: 'aggressive', clock });
    let finished = false;
    const result = policy.execute(async () => {
      await sleep(500, { clock });
      finished = true;
    });
    const caught = result.catch((e: unknown) => e);
    await clock.advance(100);
    const error = (await caught) as TimeoutError;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(finished).toBe(false);
    let settled = false;
    void error.settled!.then(() => (settled = true));
    await clock.advance(400);
    expect(finished).toBe(true);
    expect(settled).toBe(true);
  });

  it('the work signal also aborts when the caller aborts', async () => {
    const clock = new ManualClock(0);
    const controller = new AbortController();
    const policy = timeout(1000, { clock });
    const result = policy.execute(({ signal }) => sleep(5000, { clock, signal }), controller.signal);
    controller.abort(new Error('caller left'));
    await expect(result).rejects.toMatchObject({ code: 'KEEL_ABORTED' });
  });

  it('uses one timer for many concurrent calls', async () => {
    const clock = new ManualClock(0);
    const policy = timeout(100, { clock });
    const calls = Array.from({ length: 50 }, () =>
      policy.execute(({ signal }) => sleep(1000, { clock, signal })),
    );
    const outcomesP = Promise.allSettled(calls);
    // 50 sleeps plus ONE deadline timer.
    expect(clock.pendingTimers).toBe(51);
    await clock.advance(100);
    const outcomes = await outcomesP;
    expect(outcomes.every((o) => o.status === 'rejected' && o.reason instanceof TimeoutError)).toBe(true);
  });

  it('never holds the process open (as AbortSignal.timeout), and its deadlines still fire', async () => {
    // A script's last `await policy.execute(...)` used to keep node running for timeoutMs more.
    const clock = new RefCountingClock();
    const policy = timeout(30_000, { clock });
    await expect(policy.execute(() => 'done')).resolves.toBe('done');
    expect(clock.holdingOpen).toBe(0);
    const stuck = policy.execute(
      ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error))),
    );
    const caught = stuck.catch((e: unknown) => e);
    await clock.manual.advance(0);
    expect(clock.holdingOpen).toBe(0);
    await clock.manual.advance(30_000);
    expect(await caught).toBeInstanceOf(TimeoutError);
    await expect(policy.execute(() => 'again')).resolves.toBe('again');
    expect(clock.holdingOpen).toBe(0);
  });

  it('rejects bad options naming each one', () => {
    expect(() => timeout(0)).toThrow(/timeoutMs: expected a finite number > 0/);
    expect(() => timeout(10, { mode: 'brutal' as never })).toThrow(/mode/);
  });
});
