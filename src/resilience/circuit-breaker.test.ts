import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { MemoryBreakerStateStore, type BreakerStateStore } from './breaker-state-store.ts';
import { circuitBreaker } from './circuit-breaker.ts';
import { isCircuitState } from './circuit-state.ts';
import { BrokenCircuitError, IsolatedCircuitError } from './errors.ts';
import { propertyRuns } from '../testing/property-runs.ts';

const fail = (): Promise<never> => Promise.reject(new Error('down'));
const ok = (): Promise<string> => Promise.resolve('ok');

/** A promise the test settles by hand. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('circuitBreaker', () => {
  it('opens after consecutive failures and fails fast with retryAfterMs', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 3 }, openMs: 1000, clock });
    for (let i = 0; i < 3; i++) await expect(breaker.execute(fail)).rejects.toThrow('down');
    expect(breaker.state).toEqual({ status: 'open', since: 0, until: 1000, reason: 'consecutive-failures' });
    await clock.advance(400);
    let called = false;
    const error = await breaker
      .execute(() => {
        called = true;
        return 'x';
      })
      .catch((e: unknown) => e);
    expect(called).toBe(false);
    expect(error).toBeInstanceOf(BrokenCircuitError);
    expect((error as BrokenCircuitError).retryAfterMs).toBe(600);
    expect((error as BrokenCircuitError).code).toBe('KEEL_BROKEN_CIRCUIT');
  });

  it('a success resets the consecutive count', async () => {
    const breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 2 },
      clock: new ManualClock(),
    });
    await breaker.execute(fail).catch(() => undefined);
    await breaker.execute(ok);
    await breaker.execute(fail).catch(() => undefined);
    expect(breaker.state.status).toBe('closed');
  });

  it('half-open lets N probes through while other calls fail fast, and closes when all succeed', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 1 },
      openMs: 100,
      halfOpenProbes: 2,
      clock,
    });
    await breaker.execute(fail).catch(() => undefined);
    await clock.advance(100);
    expect(breaker.state.status).toBe('half-open');
    const probes = [deferred<string>(), deferred<string>()];
    const first = breaker.execute(() => probes[0]!.promise);
    const second = breaker.execute(() => probes[1]!.promise);
    // A third caller neither runs nor waits for the probes.
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
    probes[0]!.resolve('a');
    await first;
    expect(breaker.state.status).toBe('half-open');
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
    probes[1]!.resolve('b');
    await second;
    expect(breaker.state.status).toBe('closed');
  });

  it('a failed probe re-opens the breaker for another openMs', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 1 }, openMs: 100, clock });
    await breaker.execute(fail).catch(() => undefined);
    await clock.advance(150);
    await breaker.execute(fail).catch(() => undefined);
    expect(breaker.state).toEqual({ status: 'open', since: 150, until: 250, reason: 'probe-failed' });
  });

  it('ignores failures caused by the caller aborting, and errors the classifier rejects', async () => {
    const breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 1 },
      handle: (e) => (e as Error).message !== 'not found',
      clock: new ManualClock(),
    });
    const controller = new AbortController();
    await breaker
      .execute(async () => {
        controller.abort();
        throw new Error('aborted');
      }, controller.signal)
      .catch(() => undefined);
    await breaker.execute(() => Promise.reject(new Error('not found'))).catch(() => undefined);
    expect(breaker.state.status).toBe('closed');
  });

  it('a classifier that throws during a probe frees the probe slot (counted as a failure)', async () => {
    // A classic classifier bug: `e.response.status` on a network error without a response.
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 1 },
      openMs: 100,
      handle: (e) => (e as { response: { status: number } }).response.status >= 500,
      handleResult: (r) => (r as { status: number }).status >= 500,
      clock,
    });
    const networkError = (): Promise<never> => Promise.reject(new Error('ECONNRESET'));
    await expect(breaker.execute(networkError)).rejects.toThrow(TypeError);
    expect(breaker.state).toMatchObject({ status: 'open', reason: 'consecutive-failures' });
    await clock.advance(100);
    await expect(breaker.execute(networkError)).rejects.toThrow(TypeError);
    expect(breaker.state).toMatchObject({ status: 'open', reason: 'probe-failed' });
    await clock.advance(100);
    await expect(breaker.execute(() => null)).rejects.toThrow(TypeError);
    expect(breaker.state).toMatchObject({ status: 'open', reason: 'probe-failed' });
    await clock.advance(100);
    await expect(breaker.execute(() => ({ status: 200 }))).resolves.toEqual({ status: 200 });
    expect(breaker.state.status).toBe('closed');
  });

  it('counts results classified as failures', async () => {
    const breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 2 },
      handleResult: (r) => r === 503,
      clock: new ManualClock(),
    });
    await breaker.execute(() => 503);
    await breaker.execute(() => 503);
    expect(breaker.state.status).toBe('open');
  });

  it('opens when failures / calls reaches failureRate exactly, whatever the rounding of rate × calls', async () => {
    // 0.56 × 25 is 14.000000000000002 in floating point, so 14 failures of 25 once fell short.
    const breaker = circuitBreaker({
      threshold: { kind: 'count', size: 25, failureRate: 0.56 },
      clock: new ManualClock(0),
    });
    for (let i = 0; i < 11; i++) await breaker.execute(ok);
    for (let i = 0; i < 14; i++) await breaker.execute(fail).catch(() => undefined);
    expect(breaker.state).toMatchObject({ status: 'open', reason: 'failure-rate' });
  });

  it('opens on the slow-call rate over a time window', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({
      threshold: { kind: 'time', windowMs: 10_000, minimumCalls: 2, slowCallMs: 1000, slowCallRate: 1 },
      clock,
    });
    for (let i = 0; i < 2; i++) {
      const slow = deferred<string>();
      const call = breaker.execute(() => slow.promise);
      await clock.advance(1000);
      slow.resolve('late but fine');
      await call;
    }
    expect(breaker.state).toMatchObject({ status: 'open', reason: 'slow-call-rate' });
  });

  it('isolate holds the breaker open until reset, with a distinct error', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ clock });
    const events: string[] = [];
    breaker.on('stateChange', (e) => events.push(`${e.from.status}->${e.to.status}`));
    breaker.isolate();
    await clock.advance(1e9);
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(IsolatedCircuitError);
    breaker.reset();
    await expect(breaker.execute(ok)).resolves.toBe('ok');
    expect(events).toEqual(['closed->isolated', 'isolated->closed']);
  });

  it('emits break, halfOpen and reset events through disposable listeners', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 1 }, openMs: 10, clock });
    const seen: string[] = [];
    using _break = breaker.on('break', (e) => seen.push(`break:${e.state.reason}`));
    breaker.on('halfOpen', () => seen.push('halfOpen'));
    breaker.on('reset', () => seen.push('reset'));
    await breaker.execute(fail).catch(() => undefined);
    await clock.advance(10);
    await breaker.execute(ok);
    expect(seen).toEqual(['break:consecutive-failures', 'halfOpen', 'reset']);
  });

  it('state is plain data: it survives JSON and restarts a new breaker', async () => {
    const clock = new ManualClock(0);
    const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 1 }, openMs: 500, clock });
    await breaker.execute(fail).catch(() => undefined);
    const saved: unknown = JSON.parse(JSON.stringify(breaker.state));
    expect(isCircuitState(saved)).toBe(true);
    const restored = circuitBreaker({ initialState: saved as never, openMs: 500, clock });
    await expect(restored.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(() => circuitBreaker({ initialState: { status: 'ajar' } as never })).toThrow(/initialState/);
  });

  it('shares transitions through a store: one breaker opening opens the other', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryBreakerStateStore();
    const options = {
      threshold: { kind: 'consecutive', failures: 1 } as const,
      openMs: 1000,
      clock,
      shared: { store, key: 'payments', syncMs: 100 },
    };
    const a = circuitBreaker(options);
    const b = circuitBreaker(options);
    await a.execute(fail).catch(() => undefined);
    await a.flush();
    expect((await store.load('payments'))?.state.status).toBe('open');
    await b.execute(ok); // this call starts b's background sync
    await clock.advance(0);
    await expect(b.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(b.state.status).toBe('open');
  });

  it('keeps sharing after the store lost its records (a Redis restart, an evicted key)', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryBreakerStateStore();
    const options = {
      threshold: { kind: 'consecutive', failures: 1 } as const,
      openMs: 1000,
      clock,
      shared: { store, key: 'payments', syncMs: 100 },
    };
    const a = circuitBreaker(options);
    await a.execute(fail).catch(() => undefined);
    a.reset();
    await a.flush();
    expect((await store.load('payments'))?.version).toBe(2);
    await store.delete('payments');
    // A process started after the loss writes version 1 again: a must adopt it...
    const b = circuitBreaker(options);
    await b.execute(fail).catch(() => undefined);
    await b.flush();
    await clock.advance(100);
    await a.execute(ok); // starts a's background sync
    await clock.advance(0);
    await expect(a.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
    // ...and a's own transitions must reach the store again.
    a.isolate();
    await a.flush();
    expect((await store.load('payments'))?.state.status).toBe('isolated');
    await store.delete('payments');
    await clock.advance(100);
    await a.execute(ok).catch(() => undefined); // sync: the store is empty now
    await clock.advance(0);
    a.reset();
    await a.flush();
    expect(await store.load('payments')).toMatchObject({ version: 1, state: { status: 'closed' } });
  });

  it('a write in flight while a read finds the store emptied still lands', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryBreakerStateStore();
    let gate = Promise.resolve();
    const slow: BreakerStateStore = {
      load: (key) => store.load(key),
      compareAndSet: async (key, expected, state) => {
        await gate;
        return store.compareAndSet(key, expected, state);
      },
      delete: (key) => store.delete(key),
    };
    const a = circuitBreaker({ clock, shared: { store: slow, key: 'k', syncMs: 0 } });
    a.isolate();
    a.reset();
    await a.flush();
    await store.delete('k');
    let open!: () => void;
    gate = new Promise<void>((resolve) => (open = resolve));
    a.isolate(); // its compare-and-set waits at the gate
    await a.execute(ok).catch(() => undefined); // a background read finds nothing stored
    await clock.advance(0);
    open();
    await a.flush();
    expect(await store.load('k')).toMatchObject({ version: 1, state: { status: 'isolated' } });
  });

  it('keeps working on local state when the store fails, and reports it', async () => {
    const clock = new ManualClock(0);
    const broken = {
      load: () => Promise.reject(new Error('redis down')),
      compareAndSet: () => Promise.reject(new Error('redis down')),
      delete: () => Promise.resolve(),
    };
    const breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 1 },
      clock,
      shared: { store: broken, key: 'k' },
    });
    const errors: unknown[] = [];
    breaker.on('storeError', (e) => errors.push(e.error));
    await expect(breaker.execute(ok)).resolves.toBe('ok');
    await breaker.execute(fail).catch(() => undefined);
    await breaker.flush();
    await clock.advance(0);
    expect(breaker.state.status).toBe('open');
    expect(errors.length).toBeGreaterThanOrEqual(2);
  });

  it('rejects bad options naming each one', () => {
    expect(() => circuitBreaker({ openMs: -1 })).toThrow(/openMs/);
    expect(() => circuitBreaker({ halfOpenProbes: 0 })).toThrow(/halfOpenProbes/);
    expect(() => circuitBreaker({ threshold: { kind: 'count', size: 0 } })).toThrow(/threshold.size/);
    // A window of 5 calls never holds 10: such a breaker could never open on its rates.
    expect(() => circuitBreaker({ threshold: { kind: 'count', size: 5, minimumCalls: 10 } })).toThrow(
      /threshold.minimumCalls/,
    );
    expect(() => circuitBreaker({ threshold: { kind: 'count', size: 5, failureRate: Number.NaN } })).toThrow(
      /threshold.failureRate/,
    );
    expect(() => circuitBreaker({ shared: { store: new MemoryBreakerStateStore(), key: '' } })).toThrow(
      /shared.key/,
    );
  });
});

type Action =
  { kind: 'ok' } | { kind: 'fail' } | { kind: 'wait'; ms: number } | { kind: 'isolate' } | { kind: 'reset' };

describe('circuitBreaker properties', () => {
  const action: fc.Arbitrary<Action> = fc.oneof(
    { weight: 5, arbitrary: fc.constant({ kind: 'ok' as const }) },
    { weight: 5, arbitrary: fc.constant({ kind: 'fail' as const }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.nat(300) }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'isolate' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
  );

  it('random outcomes and time steps never reach an invalid state, and follow a reference model', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(action, { maxLength: 40 }),
        async (failures, actions) => {
          const clock = new ManualClock(0);
          const openMs = 100;
          const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures }, openMs, clock });
          // Reference model: status, run of failures, open-until.
          let status: string = 'closed';
          let run = 0;
          let until = 0;
          for (const a of actions) {
            if (status === 'open' && clock.now() >= until) status = 'half-open';
            if (a.kind === 'wait') await clock.advance(a.ms);
            else if (a.kind === 'isolate') {
              breaker.isolate();
              status = 'isolated';
            } else if (a.kind === 'reset') {
              breaker.reset();
              status = 'closed';
              run = 0;
            } else {
              let ran = false;
              const outcome = await breaker
                .execute(() => {
                  ran = true;
                  return a.kind === 'ok' ? ok() : fail();
                })
                .then(
                  () => 'ok',
                  (e: unknown) => (e instanceof Error ? e.message : 'other'),
                );
              const admitted = status === 'closed' || status === 'half-open';
              expect(ran).toBe(admitted);
              if (!admitted) expect(outcome).toMatch(/circuit is/);
              else if (a.kind === 'ok') {
                status = 'closed';
                run = 0;
              } else if (status === 'half-open' || ++run >= failures) {
                status = 'open';
                until = clock.now() + openMs;
                run = 0;
              }
            }
            if (status === 'open' && clock.now() >= until) status = 'half-open';
            const state = breaker.state;
            expect(isCircuitState(JSON.parse(JSON.stringify(state)))).toBe(true);
            expect(state.status).toBe(status);
            if (state.status !== 'closed') expect(breaker.stats().calls).toBe(0);
          }
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it('a count-window breaker reports the rates of a reference model and opens exactly when it says', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.double({ min: 0.1, max: 1, noNaN: true }),
        fc.array(fc.boolean(), { maxLength: 50 }),
        async (size, minimum, rate, outcomes) => {
          const clock = new ManualClock(0);
          const minimumCalls = Math.min(size, minimum);
          const breaker = circuitBreaker({
            threshold: { kind: 'count', size, minimumCalls, failureRate: rate },
            openMs: 1000,
            clock,
          });
          let window: boolean[] = [];
          for (const failed of outcomes) {
            if (breaker.state.status !== 'closed') {
              breaker.reset();
              window = [];
            }
            await breaker.execute(() => (failed ? fail() : ok())).catch(() => undefined);
            window = [...window, failed].slice(-size);
            const failures = window.filter(Boolean).length;
            const shouldOpen = window.length >= minimumCalls && failures / window.length >= rate;
            expect(breaker.state.status).toBe(shouldOpen ? 'open' : 'closed');
            if (!shouldOpen)
              expect(breaker.stats()).toMatchObject({
                calls: window.length,
                failures,
                failureRate: failures / window.length,
              });
          }
        },
      ),
      { numRuns: propertyRuns(80) },
    );
  });

  it('half-open never runs more than halfOpenProbes calls at once; the rest fail fast', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 12 }),
        fc.boolean(),
        async (probes, callers, succeed) => {
          const clock = new ManualClock(0);
          const breaker = circuitBreaker({
            threshold: { kind: 'consecutive', failures: 1 },
            openMs: 10,
            halfOpenProbes: probes,
            clock,
          });
          await breaker.execute(fail).catch(() => undefined);
          await clock.advance(10);
          const gates = Array.from({ length: callers }, () => deferred<string>());
          // A fast-failed caller never awaits its gate; rejecting that gate must not be unhandled.
          for (const g of gates) g.promise.catch(() => undefined);
          let running = 0;
          const calls = gates.map((g) =>
            breaker
              .execute(() => {
                running++;
                return g.promise;
              })
              .then(
                () => 'ran',
                (e: unknown) => (e instanceof BrokenCircuitError ? 'fast-failed' : 'ran'),
              ),
          );
          expect(running).toBe(Math.min(probes, callers));
          for (const g of gates) {
            if (succeed) g.resolve('ok');
            else g.reject(new Error('still down'));
          }
          const outcomes = await Promise.all(calls);
          expect(outcomes.filter((o) => o === 'fast-failed')).toHaveLength(
            callers - Math.min(probes, callers),
          );
          const expected = !succeed ? 'open' : callers >= probes ? 'closed' : 'half-open';
          expect(breaker.state.status).toBe(expected);
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });
});
