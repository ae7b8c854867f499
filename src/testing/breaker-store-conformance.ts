import { describe, expect, it } from 'vitest';
import { MemoryBreakerStateStore, type BreakerStateStore } from '../resilience/breaker-state-store.ts';
import { circuitBreaker } from '../resilience/circuit-breaker.ts';
import type { CircuitState } from '../resilience/circuit-state.ts';
import { BrokenCircuitError } from '../resilience/errors.ts';
import { ManualClock } from '../time/index.ts';

export interface BreakerStoreTarget {
  /** Shown in the suite's name: 'memory', 'redis', 'postgres (pglite)'. */
  name: string;
  /** A store isolated from every other test (its own key prefix or schema). */
  create: () => Promise<BreakerStateStore>;
  /** Releases what `create` made (connections, schema). */
  destroy?: (store: BreakerStateStore) => Promise<void>;
  /** Set when the backing server is missing: every scenario is skipped, stating this reason. */
  skip?: string;
}

const states: CircuitState[] = [
  { status: 'closed', since: 1_767_225_600_000 },
  { status: 'open', since: 1_767_225_600_000, until: 1_767_225_630_000, reason: 'failure-rate' },
  { status: 'half-open', since: 1_767_225_630_000 },
  { status: 'isolated', since: 1_767_225_700_000 },
];

/**
 * The one suite every `BreakerStateStore` passes. Call it once per implementation, from a
 * file in `test/conformance/`.
 */
export function breakerStateStoreConformance(target: BreakerStoreTarget): void {
  const title = `BreakerStateStore conformance: ${target.name}${target.skip ? ` (skipped: ${target.skip})` : ''}`;
  describe.skipIf(target.skip !== undefined)(title, () => {
    async function withStore(fn: (store: BreakerStateStore) => Promise<void>): Promise<void> {
      const store = await target.create();
      try {
        await fn(store);
      } finally {
        await target.destroy?.(store);
      }
    }

    it('loads nothing for a key never saved', () =>
      withStore(async (store) => {
        expect(await store.load('never-saved')).toBeUndefined();
      }));

    it('saves version 1 from version 0 and loads every state variant back equal', () =>
      withStore(async (store) => {
        for (const [i, state] of states.entries()) {
          const result = await store.compareAndSet(`variant-${i}`, 0, state);
          expect(result).toEqual({ saved: true, record: { version: 1, state } });
          expect(await store.load(`variant-${i}`)).toEqual({ version: 1, state });
        }
      }));

    it('refuses a stale version and returns the record that won', () =>
      withStore(async (store) => {
        await store.compareAndSet('k', 0, states[0]!);
        await store.compareAndSet('k', 1, states[1]!);
        const stale = await store.compareAndSet('k', 1, states[3]!);
        expect(stale).toEqual({ saved: false, record: { version: 2, state: states[1] } });
        const fresh = await store.compareAndSet('k', 0, states[3]!);
        expect(fresh.saved).toBe(false);
        expect(await store.load('k')).toEqual({ version: 2, state: states[1] });
      }));

    it('lets exactly one of many concurrent writers of the same version win', () =>
      withStore(async (store) => {
        await store.compareAndSet('race', 0, states[0]!);
        const results = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            store.compareAndSet('race', 1, {
              status: 'open',
              since: i,
              until: i + 1,
              reason: 'failure-rate',
            }),
          ),
        );
        const winners = results.filter((r) => r.saved);
        expect(winners).toHaveLength(1);
        expect(await store.load('race')).toEqual(winners[0]!.record);
        for (const loser of results.filter((r) => !r.saved)) expect(loser.record.version).toBe(2);
      }));

    it('keeps keys apart, and forgets a deleted key', () =>
      withStore(async (store) => {
        await store.compareAndSet('a', 0, states[1]!);
        await store.compareAndSet('b', 0, states[3]!);
        expect((await store.load('a'))?.state).toEqual(states[1]);
        await store.delete('a');
        expect(await store.load('a')).toBeUndefined();
        expect((await store.load('b'))?.state).toEqual(states[3]);
        expect((await store.compareAndSet('a', 0, states[0]!)).saved).toBe(true);
      }));

    it('shares an open breaker between two breakers through the store', () =>
      withStore(async (store) => {
        const clock = new ManualClock();
        const options = {
          threshold: { kind: 'consecutive', failures: 1 } as const,
          openMs: 60_000,
          clock,
          shared: { store, key: 'payments', syncMs: 0 },
        };
        const a = circuitBreaker(options);
        const b = circuitBreaker(options);
        await a.execute(() => Promise.reject(new Error('down'))).catch(() => undefined);
        await a.flush();
        await b.execute(() => 'starts a sync');
        // The background read completes within a few event-loop turns, on any store.
        for (let i = 0; i < 50 && b.state.status !== 'open'; i++) await new Promise((r) => setTimeout(r, 5));
        await expect(b.execute(() => 'x')).rejects.toBeInstanceOf(BrokenCircuitError);
        b.reset();
        await b.flush();
        expect((await store.load('payments'))?.state.status).toBe('closed');
      }));
  });
}

/** The in-memory store, for suites that want a default. */
export const memoryBreakerStoreTarget: BreakerStoreTarget = {
  name: 'memory',
  create: async () => new MemoryBreakerStateStore(),
};
