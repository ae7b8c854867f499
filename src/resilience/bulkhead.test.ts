import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ManualClock, sleep } from '../time/index.ts';
import { bulkhead } from './bulkhead.ts';
import { BulkheadRejectedError, TimeoutError } from './errors.ts';
import { pipeline } from './pipeline.ts';
import { timeout } from './timeout.ts';

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('bulkhead', () => {
  it('runs maxConcurrent at once, queues maxQueue in order, rejects the rest with a typed error', async () => {
    const policy = bulkhead({ maxConcurrent: 2, maxQueue: 1 });
    const gates = [gate(), gate(), gate()];
    const order: number[] = [];
    const calls = gates.map((g, i) =>
      policy.execute(async () => {
        order.push(i);
        await g.promise;
        return i;
      }),
    );
    const rejected = await policy.execute(() => 'x').catch((e: unknown) => e);
    expect(rejected).toBeInstanceOf(BulkheadRejectedError);
    expect((rejected as BulkheadRejectedError).code).toBe('KEEL_BULKHEAD_REJECTED');
    expect(policy.running).toBe(2);
    expect(policy.queued).toBe(1);
    gates[0]!.open();
    await calls[0];
    await Promise.resolve();
    expect(order).toEqual([0, 1, 2]);
    gates[1]!.open();
    gates[2]!.open();
    expect(await Promise.all(calls)).toEqual([0, 1, 2]);
    expect(policy.running).toBe(0);
  });

  it('a queued call leaves the queue when its signal aborts', async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5 });
    const g = gate();
    const first = policy.execute(() => g.promise);
    const controller = new AbortController();
    const queued = policy.execute(() => 'never', controller.signal);
    controller.abort();
    await expect(queued).rejects.toMatchObject({ code: 'KEEL_ABORTED' });
    expect(policy.queued).toBe(0);
    g.open();
    await first;
  });

  it('a call aborted from the middle of the queue leaves the others in order, and takes no slot', async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 3 });
    const g = gate();
    const order: string[] = [];
    const first = policy.execute(() => g.promise);
    const controllers = ['a', 'b', 'c'].map(() => new AbortController());
    const queued = ['a', 'b', 'c'].map((name, i) =>
      policy.execute(() => order.push(name), controllers[i]!.signal).catch((e: unknown) => e),
    );
    controllers[1]!.abort();
    expect(await queued[1]).toMatchObject({ code: 'KEEL_ABORTED' });
    expect(policy.queued).toBe(2);
    controllers[1]!.abort(); // a second abort changes nothing
    g.open();
    await first;
    await Promise.all(queued);
    expect(order).toEqual(['a', 'c']);
    expect([policy.running, policy.queued]).toEqual([0, 0]);
  });

  it('an aggressive timeout inside the bulkhead does not free the slot while the work runs', async () => {
    const clock = new ManualClock(0);
    const limited = bulkhead({ maxConcurrent: 1 });
    const policy = pipeline(limited, timeout(100, { mode: 'aggressive', clock }));
    const stuck = policy.execute(() => sleep(1000, { clock }));
    const caught = stuck.catch((e: unknown) => e);
    await clock.advance(100);
    expect(await caught).toBeInstanceOf(TimeoutError);
    // The caller has its TimeoutError, but the work still runs: the slot stays taken.
    expect(limited.running).toBe(1);
    await expect(limited.execute(() => 'next')).rejects.toBeInstanceOf(BulkheadRejectedError);
    await clock.advance(900);
    expect(limited.running).toBe(0);
    await expect(limited.execute(() => 'next')).resolves.toBe('next');
  });

  it('an aggressive timeout outside the bulkhead does not free the slot either', async () => {
    const clock = new ManualClock(0);
    const limited = bulkhead({ maxConcurrent: 1 });
    const policy = pipeline(timeout(100, { mode: 'aggressive', clock }), limited);
    const stuck = policy.execute(() => sleep(1000, { clock }));
    const caught = stuck.catch((e: unknown) => e);
    await clock.advance(100);
    expect(await caught).toBeInstanceOf(TimeoutError);
    expect(limited.running).toBe(1);
    await clock.advance(900);
    expect(limited.running).toBe(0);
  });

  it('a bulkhead that stays saturated keeps its memory flat (its queue never empties)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const policy = bulkhead({ maxConcurrent: 1, maxQueue: 2 });
    const finish: (() => void)[] = [];
    const call = (): Promise<void> => policy.execute(() => new Promise<void>((r) => finish.push(r)));
    // One running and two queued at every instant: each call that ends lets one more in.
    const cycle = async (calls: Promise<void>[], n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        finish.shift()!();
        await calls.shift();
        calls.push(call());
      }
    };
    const calls = [call(), call(), call()];
    await cycle(calls, 1000);
    gc();
    const before = process.memoryUsage().heapUsed;
    await cycle(calls, 300_000);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(policy.queued).toBe(2);
    // A slot per call ever queued would be 8 bytes × 300 000 = 2.4 MB.
    expect(grown).toBeLessThan(1_000_000);
    while (finish.length > 0) {
      finish.shift()!();
      await calls.shift();
    }
    expect(policy.running).toBe(0);
  });

  it('rejects bad options naming each one', () => {
    expect(() => bulkhead({ maxConcurrent: 0 })).toThrow(/maxConcurrent/);
    expect(() => bulkhead({ maxConcurrent: 1, maxQueue: -1 })).toThrow(/maxQueue/);
    expect(() => bulkhead(undefined as never)).toThrow(/options/);
  });
});
