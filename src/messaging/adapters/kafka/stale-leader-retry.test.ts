// How a projection runner's one-shot call rides out a moving leader, on errors built as the
// Kafka client builds them and a manual clock. The runner's calls doing so against a real
// Kafka: kafka-projection-stale-leader.test.ts.
import { NetworkError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { KeelError } from '../../../errors/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { answered, fetchApi, listOffsetsApi, wrapped } from './kafka-answers-test-support.ts';
import { StaleLeaderRetry } from './stale-leader-retry.ts';

const stale = (): KeelError => wrapped(answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER'));
const down = (): KeelError => wrapped(new NetworkError('Connection refused'));

function retryOn(clock: ManualClock, limitMs = 3000, stop = new AbortController()): StaleLeaderRetry {
  return new StaleLeaderRetry({
    clock,
    retryDelayMs: 1000,
    limitMs,
    stopped: stop.signal,
    whenStopped: (failure) => new KeelError('KEEL_SERVICE_STATE', 'stopped', { cause: failure }),
  });
}

/** An attempt that fails with `failures` in turn, then resolves with 'through'; `calls` counts them. */
function attempts(...failures: Error[]): { attempt: () => Promise<string>; calls: () => number } {
  let calls = 0;
  return {
    attempt: async () => {
      const failure = failures[calls++];
      if (failure !== undefined) throw failure;
      return 'through';
    },
    calls: () => calls,
  };
}

/** The call's outcome once it settles, without an unhandled rejection meanwhile. */
function outcome<T>(call: Promise<T>): { settled: () => { value?: T; error?: unknown } | undefined } {
  let settled: { value?: T; error?: unknown } | undefined;
  call.then(
    (value) => void (settled = { value }),
    (error: unknown) => void (settled = { error }),
  );
  return { settled: () => settled };
}

describe('StaleLeaderRetry', () => {
  it('tries a stale-leader failure again after retryDelayMs on the clock, and resolves with the attempt that goes through', async () => {
    const clock = new ManualClock();
    const work = attempts(stale(), wrapped(answered(listOffsetsApi, 'UNKNOWN_LEADER_EPOCH')));
    const call = outcome(retryOn(clock).run(work.attempt));
    await clock.advance(0);
    expect(work.calls()).toBe(1);
    expect(clock.nextTimerIn()).toBe(1000);
    await clock.advance(999);
    expect(work.calls()).toBe(1);
    await clock.advance(1);
    expect(work.calls()).toBe(2);
    expect(call.settled()).toBeUndefined();
    await clock.advance(1000);
    expect(call.settled()).toEqual({ value: 'through' });
    expect(work.calls()).toBe(3);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects with the last failure, as it is, once stale-leader failures have gone on for the limit', async () => {
    const clock = new ManualClock();
    const failures = [stale(), stale(), stale(), stale(), stale()];
    const work = attempts(...failures);
    const call = outcome(retryOn(clock, 3000).run(work.attempt));
    // Failures at 0, 1 000 and 2 000 ms are within the limit; the one at 3 000 is not.
    await clock.advance(2999);
    expect(call.settled()).toBeUndefined();
    await clock.advance(1);
    expect(call.settled()).toEqual({ error: failures[3] });
    expect(work.calls()).toBe(4);
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects at once on any other failure, and on a stale-leader one that `retriable` refuses', async () => {
    const clock = new ManualClock();
    const failure = down();
    await expect(retryOn(clock).run(attempts(failure).attempt)).rejects.toBe(failure);
    // catchUp()'s batch failed: not Kafka's answer, whatever the error says.
    const applying = stale();
    await expect(retryOn(clock).run(attempts(applying).attempt, () => false)).rejects.toBe(applying);
    expect(clock.pendingTimers).toBe(0);
  });

  it('with a limit of 0 rejects at the first stale-leader failure', async () => {
    const clock = new ManualClock();
    const failure = stale();
    await expect(retryOn(clock, 0).run(attempts(failure).attempt)).rejects.toBe(failure);
    expect(clock.pendingTimers).toBe(0);
  });

  it('an attempt through ends the run: the same call’s next attempt (catchUp()’s next look) has the whole limit again', async () => {
    const clock = new ManualClock();
    const retry = retryOn(clock, 3000);
    const first = outcome(retry.run(attempts(stale(), stale(), stale()).attempt));
    await clock.advance(3000);
    expect(first.settled()).toEqual({ value: 'through' });
    const failures = [stale(), stale(), stale(), stale()];
    const next = outcome(retry.run(attempts(...failures).attempt));
    await clock.advance(2999);
    expect(next.settled()).toBeUndefined();
    await clock.advance(1);
    expect(next.settled()).toEqual({ error: failures[3] });
  });

  it('each call counts its own run: one begun late in another’s has the whole limit', async () => {
    const clock = new ManualClock();
    const early = outcome(retryOn(clock, 3000).run(attempts(stale(), stale(), stale(), stale()).attempt));
    await clock.advance(2000);
    const late = outcome(retryOn(clock, 3000).run(attempts(stale(), stale(), stale(), stale()).attempt));
    await clock.advance(1000);
    expect(early.settled()?.error).toBeInstanceOf(KeelError);
    expect(late.settled()).toBeUndefined();
    await clock.advance(2000);
    expect(late.settled()?.error).toBeInstanceOf(KeelError);
  });

  it('stopped during its wait: the wait ends at once, the call rejects with whenStopped(failure), its timer cleared', async () => {
    const clock = new ManualClock();
    const stop = new AbortController();
    const failure = stale();
    const work = attempts(failure, stale());
    const call = outcome(retryOn(clock, 30_000, stop).run(work.attempt));
    await clock.advance(500);
    expect(clock.pendingTimers).toBe(1);
    stop.abort();
    await clock.advance(0);
    expect(call.settled()?.error).toMatchObject({ code: 'KEEL_SERVICE_STATE', cause: failure });
    expect(work.calls()).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('stopped before a failure: no wait begins; other failures and results pass as they are', async () => {
    const clock = new ManualClock();
    const stop = new AbortController();
    stop.abort();
    const retry = retryOn(clock, 30_000, stop);
    const failure = stale();
    await expect(retry.run(attempts(failure).attempt)).rejects.toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      cause: failure,
    });
    const other = down();
    await expect(retry.run(attempts(other).attempt)).rejects.toBe(other);
    await expect(retry.run(attempts().attempt)).resolves.toBe('through');
    expect(clock.pendingTimers).toBe(0);
  });
});
