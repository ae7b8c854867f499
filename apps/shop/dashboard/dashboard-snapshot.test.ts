import { describe, expect, it } from 'vitest';
import type { SagaState } from '../../../src/saga/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import { buildDashboardSnapshot, type DashboardSources } from './dashboard-snapshot.ts';

const sagaCounts: Record<SagaState, number> = {
  RUNNING: 2,
  COMPENSATING: 0,
  COMPLETED: 7,
  COMPENSATED: 1,
  NEEDS_ATTENTION: 3,
};

function sources(overrides: Partial<DashboardSources> = {}): DashboardSources {
  const depths: Record<string, number> = { 'shop.orders': 4, 'shop.orders.dead-letter': 1 };
  return {
    clock: new ManualClock(),
    queue: {
      depth: async (name) => depths[name] ?? 0,
      lag: async (name) => (name === 'shop.orders' ? 2.5 : 0),
    },
    queues: ['shop.orders'],
    outbox: async () => ({ backlog: 5, parked: 1, published: 40, oldestUnpublishedAgeMs: 1200 }),
    sagas: async () => sagaCounts,
    breakers: () => [
      { name: 'payments', state: 'open' },
      // A breaker's own state object: its status is what shows.
      { name: 'mail', state: { status: 'half-open', since: 0 } },
    ],
    latency: () => [{ route: 'POST /v1/orders', count: 3, perSecond: 0.05, p50Ms: 4, p95Ms: 9, p99Ms: 9 }],
    ...overrides,
  };
}

describe('buildDashboardSnapshot', () => {
  it('reads queues with their dead letters, outbox, sagas, breakers and latency into one snapshot', async () => {
    expect(await buildDashboardSnapshot(sources())).toEqual({
      at: '2026-01-01T00:00:00.000Z',
      queues: [{ name: 'shop.orders', depth: 4, lagSeconds: 2.5, deadLetters: 1 }],
      outbox: { backlog: 5, parked: 1, published: 40, oldestUnpublishedAgeMs: 1200 },
      sagas: { byState: sagaCounts, needAttention: 3 },
      breakers: [
        { name: 'payments', state: 'open' },
        { name: 'mail', state: 'half-open' },
      ],
      latency: [{ route: 'POST /v1/orders', count: 3, perSecond: 0.05, p50Ms: 4, p95Ms: 9, p99Ms: 9 }],
      unavailable: [],
    });
  });

  it('shows what it can when a part cannot be read, and says which part and why', async () => {
    const down = async (): Promise<never> => {
      throw new Error('connection refused');
    };
    const snapshot = await buildDashboardSnapshot(
      sources({
        queue: { depth: down, lag: down },
        outbox: down,
        sagas: down,
        breakers: () => {
          throw new Error('no breakers today');
        },
      }),
    );
    expect(snapshot).toMatchObject({ queues: null, outbox: null, sagas: null, breakers: null });
    expect(snapshot.latency).toHaveLength(1);
    expect(snapshot.unavailable).toEqual([
      { part: 'breakers', error: 'no breakers today' },
      { part: 'outbox', error: 'connection refused' },
      { part: 'queues', error: 'connection refused' },
      { part: 'sagas', error: 'connection refused' },
    ]);
  });
});
