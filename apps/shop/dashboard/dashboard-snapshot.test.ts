import { describe, expect, it } from 'vitest';
import type { SagaState } from '../../../src/saga/index.ts';
import type { ScheduleRow } from '../../../src/schedule/schedule-store.ts';
import type { ServiceHealth } from '../../../src/service/index.ts';
import { ManualClock, referenceInstant } from '../../../src/time/index.ts';
import type { ProcessRecord } from '../processes/processes-store.ts';
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
    processes: async () => [],
    schedules: async () => [
      scheduleRow('shop.daily-sales', { nextTick: referenceInstant + 300_000, fired: 4 }),
      scheduleRow('reports.hourly', {
        nextTick: referenceInstant - 60_000,
        attempts: 2,
        lastError: 'Error: report store down',
        retryAt: referenceInstant + 4000,
      }),
      scheduleRow('cache.refresh', { nextTick: referenceInstant - 1000 }),
      scheduleRow('digest.weekly', { nextTick: referenceInstant - 1000, pausedAt: referenceInstant - 5000 }),
    ],
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
      processes: [],
      schedules: [
        {
          name: 'shop.daily-sales',
          spec: 'every 60000',
          state: 'waiting',
          nextTick: '2026-01-01T00:05:00.000Z',
          lastTick: '2025-12-31T23:59:00.000Z',
          fired: 4,
          givenUp: 1,
          failing: null,
          runByHand: null,
          lastRunByHand: null,
        },
        {
          name: 'reports.hourly',
          spec: 'every 60000',
          state: 'failing',
          nextTick: '2025-12-31T23:59:00.000Z',
          lastTick: '2025-12-31T23:59:00.000Z',
          fired: 0,
          givenUp: 1,
          failing: { attempts: 2, error: 'Error: report store down', retryAt: '2026-01-01T00:00:04.000Z' },
          runByHand: null,
          lastRunByHand: null,
        },
        expect.objectContaining({ name: 'cache.refresh', state: 'due' }),
        expect.objectContaining({ name: 'digest.weekly', state: 'paused' }),
      ],
      latency: [{ route: 'POST /v1/orders', count: 3, perSecond: 0.05, p50Ms: 4, p95Ms: 9, p99Ms: 9 }],
      unavailable: [],
    });
  });

  it('shows a run asked for by hand while it is pending, and the last one a scheduler did', async () => {
    const snapshot = await buildDashboardSnapshot(
      sources({
        schedules: async () => [
          // Run 3 pending, paused or not; run 2 failed before it.
          scheduleRow('shop.daily-sales', {
            pausedAt: referenceInstant - 60_000,
            triggeredAt: referenceInstant - 12_000,
            triggers: 3,
            lastTrigger: 2,
            lastTriggerDoneAt: referenceInstant - 3_600_000,
            lastTriggerError: 'Error: payments store down',
          }),
          scheduleRow('reports.hourly', {
            nextTick: referenceInstant + 60_000,
            triggers: 1,
            lastTrigger: 1,
            lastTriggerDoneAt: referenceInstant - 5000,
          }),
        ],
      }),
    );
    expect(
      snapshot.schedules!.map(({ name, state, runByHand, lastRunByHand }) => ({
        name,
        state,
        runByHand,
        lastRunByHand,
      })),
    ).toEqual([
      {
        name: 'shop.daily-sales',
        state: 'paused',
        runByHand: { run: 3, askedAt: '2025-12-31T23:59:48.000Z' },
        lastRunByHand: {
          run: 2,
          at: '2025-12-31T23:00:00.000Z',
          outcome: 'failed',
          error: 'Error: payments store down',
        },
      },
      {
        name: 'reports.hourly',
        state: 'waiting',
        runByHand: null,
        lastRunByHand: { run: 1, at: '2025-12-31T23:59:55.000Z', outcome: 'fired' },
      },
    ]);
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
        processes: down,
        schedules: down,
        breakers: () => {
          throw new Error('no breakers today');
        },
      }),
    );
    expect(snapshot).toMatchObject({
      queues: null,
      outbox: null,
      sagas: null,
      breakers: null,
      processes: null,
      schedules: null,
    });
    expect(snapshot.latency).toHaveLength(1);
    expect(snapshot.unavailable).toEqual([
      { part: 'breakers', error: 'no breakers today' },
      { part: 'outbox', error: 'connection refused' },
      { part: 'processes', error: 'connection refused' },
      { part: 'queues', error: 'connection refused' },
      { part: 'sagas', error: 'connection refused' },
      { part: 'schedules', error: 'connection refused' },
    ]);
  });
});

/** A schedule's row: fired once a minute until a minute before the reference instant. */
function scheduleRow(name: string, rest: Partial<ScheduleRow> = {}): ScheduleRow {
  return {
    name,
    spec: 'every 60000',
    nextTick: referenceInstant,
    retryAt: null,
    attempts: 0,
    lastError: null,
    lastTick: referenceInstant - 60_000,
    lastFiredAt: referenceInstant - 60_000,
    fired: 0,
    failed: 1,
    pausedAt: null,
    triggeredAt: null,
    triggers: 0,
    lastTrigger: null,
    lastTriggerDoneAt: null,
    lastTriggerError: null,
    ...rest,
  };
}

/** A row as a process's heartbeat writes it, last seen `agoMs` before the reference instant. */
function row(id: string, roles: string[], agoMs: number, rest: Partial<ProcessRecord> = {}): ProcessRecord {
  return {
    id,
    roles,
    host: 'node-1',
    pid: 100,
    startedAt: referenceInstant - 600_000,
    lastSeenAt: referenceInstant - agoMs,
    heartbeatMs: 5000,
    stoppedAt: null,
    breakers: [],
    health: {},
    ...rest,
  };
}

describe('buildDashboardSnapshot across processes', () => {
  const rows: ProcessRecord[] = [
    row('api-1', ['api'], 4000, {
      breakers: [{ name: 'mail', state: 'closed', since: 0 }],
    }),
    // Three beats of 5 s missed makes stale: 14 s is still live.
    row('worker-1', ['worker'], 14_000, {
      pid: 200,
      breakers: [
        { name: 'payment-provider', state: 'open', since: 1, until: 2, reason: 'consecutive-failures' },
        { name: 'smtp', state: 'closed', since: 1 },
      ],
    }),
    row('worker-0', ['worker'], 16_000, {
      breakers: [{ name: 'payment-provider', state: 'closed', since: 1 }],
    }),
    row('relay-0', ['relay'], 30_000, {
      stoppedAt: referenceInstant - 30_000,
      breakers: [{ name: 'unused', state: 'closed', since: 1 }],
    }),
  ];

  it("lists every process with its status, and the live ones' breakers labelled, this one's read now", async () => {
    const snapshot = await buildDashboardSnapshot(
      sources({
        processes: async () => rows,
        self: 'api-1',
        // Its row says closed, a beat ago; what it holds now is what shows.
        breakers: () => [{ name: 'mail', state: { status: 'half-open', since: 0 } }],
      }),
    );
    expect(snapshot.unavailable).toEqual([]);
    expect(snapshot.breakers).toEqual([
      { name: 'mail', state: 'half-open', process: 'api-1' },
      { name: 'payment-provider', state: 'open', process: 'worker-1' },
      { name: 'smtp', state: 'closed', process: 'worker-1' },
    ]);
    expect(snapshot.processes!.map((p) => [p.id, p.status, p.self])).toEqual([
      ['api-1', 'live', true],
      ['worker-1', 'live', false],
      ['worker-0', 'stale', false],
      ['relay-0', 'stopped', false],
    ]);
    expect(snapshot.processes![1]).toEqual({
      id: 'worker-1',
      roles: ['worker'],
      host: 'node-1',
      pid: 200,
      startedAt: '2025-12-31T23:50:00.000Z',
      lastSeenAt: '2025-12-31T23:59:46.000Z',
      stoppedAt: null,
      status: 'live',
      self: false,
      parts: {},
    });
    expect(snapshot.processes![3]!.stoppedAt).toBe('2025-12-31T23:59:30.000Z');
  });

  it('shows its own breakers before its row is written, and alone when the rows cannot be read', async () => {
    const own = () => [{ name: 'mail', state: 'open' }];
    const unwritten = await buildDashboardSnapshot(
      sources({ processes: async () => rows.slice(1), self: 'api-2', breakers: own }),
    );
    expect(unwritten.breakers!.map((b) => `${b.name}@${b.process}`)).toEqual([
      'payment-provider@worker-1',
      'smtp@worker-1',
      'mail@api-2',
    ]);

    const down = await buildDashboardSnapshot(
      sources({
        processes: async () => {
          throw new Error('connection refused');
        },
        self: 'api-2',
        breakers: own,
      }),
    );
    expect(down.processes).toBeNull();
    expect(down.breakers).toEqual([{ name: 'mail', state: 'open', process: 'api-2' }]);
    expect(down.unavailable).toEqual([
      { part: 'breakers', error: "other processes' unknown: connection refused" },
      { part: 'processes', error: 'connection refused' },
    ]);
  });
});

describe("buildDashboardSnapshot: the processes' parts", () => {
  const relayFailing = {
    status: 'failing',
    dependency: 'broker',
    during: 'publish',
    since: '2025-12-31T23:59:40.000Z',
    failures: 4,
    error: 'ECONNREFUSED',
  } as const;
  const rows: ProcessRecord[] = [
    row('api-1', ['api'], 4000, { health: { 'process-heartbeat': { status: 'ok' } } }),
    row('relay-1', ['relay'], 2000, {
      health: { 'process-heartbeat': { status: 'ok' }, 'outbox-relay': relayFailing },
    }),
    // What a crashed worker last said: shown as it was, the row stale.
    row('worker-0', ['worker'], 60_000, {
      health: {
        worker: { status: 'failing', dependency: 'database', since: '2025-12-31T23:58:00.000Z', failures: 0 },
      },
    }),
    row('worker-1', ['worker'], 30_000, {
      stoppedAt: referenceInstant - 30_000,
      health: { worker: { status: 'ok' } },
    }),
  ];

  it("shows this process's parts read now, and each other's as its last beat wrote them", async () => {
    const clock = new ManualClock();
    // Its row says ok, a beat ago; it has lost its database since.
    const parts = (): Record<string, ServiceHealth> => ({
      'process-heartbeat': {
        status: 'failing',
        dependency: 'database',
        during: 'beat',
        since: referenceInstant - 1000,
        failures: 1,
        lastError: Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' }),
        lastContactAt: referenceInstant - 4000,
      },
    });
    const snapshot = await buildDashboardSnapshot(
      sources({ clock, processes: async () => rows, self: 'api-1', parts }),
    );
    expect(snapshot.processes!.map((p) => [p.id, p.status, p.parts])).toEqual([
      [
        'api-1',
        'live',
        {
          // A report, as /readyz gives it: the error's code, not its message.
          'process-heartbeat': {
            status: 'failing',
            dependency: 'database',
            during: 'beat',
            since: '2025-12-31T23:59:59.000Z',
            failures: 1,
            error: 'ECONNREFUSED',
            lastContactAt: '2025-12-31T23:59:56.000Z',
          },
        },
      ],
      ['relay-1', 'live', { 'process-heartbeat': { status: 'ok' }, 'outbox-relay': relayFailing }],
      ['worker-0', 'stale', rows[2]!.health],
      ['worker-1', 'stopped', { worker: { status: 'ok' } }],
    ]);
  });

  it('shows this process alone, live with its parts read now, when the rows cannot be read', async () => {
    const refused = async (): Promise<never> => {
      throw new Error('connection refused');
    };
    // Its heartbeat cannot write its row either: that is what its parts say.
    const parts = (): Record<string, ServiceHealth> => ({
      'process-heartbeat': {
        status: 'failing',
        dependency: 'database',
        during: 'beat',
        since: referenceInstant - 3000,
        failures: 1,
        lastError: Object.assign(new Error('connection refused'), { code: 'KEEL_DB_UNAVAILABLE' }),
        lastContactAt: undefined,
      },
      'http-server': { status: 'ok', lastContactAt: undefined },
    });
    const identity = () => ({
      roles: ['api', 'relay'],
      host: 'node-9',
      pid: 77,
      startedAt: referenceInstant - 60_000,
    });
    const down = await buildDashboardSnapshot(
      sources({
        processes: refused,
        self: 'api-1',
        identity,
        parts,
        breakers: () => [{ name: 'mail', state: 'open' }],
      }),
    );
    expect(down.processes).toEqual([
      {
        id: 'api-1',
        roles: ['api', 'relay'],
        host: 'node-9',
        pid: 77,
        startedAt: '2025-12-31T23:59:00.000Z',
        // It serves the page: seen now, whatever its row says.
        lastSeenAt: '2026-01-01T00:00:00.000Z',
        stoppedAt: null,
        status: 'live',
        self: true,
        parts: {
          'process-heartbeat': {
            status: 'failing',
            dependency: 'database',
            during: 'beat',
            since: '2025-12-31T23:59:57.000Z',
            failures: 1,
            error: 'KEEL_DB_UNAVAILABLE',
          },
          'http-server': { status: 'ok' },
        },
      },
    ]);
    expect(down.breakers).toEqual([{ name: 'mail', state: 'open', process: 'api-1' }]);
    // Each card says what is missing: the other processes.
    expect(down.unavailable).toEqual([
      { part: 'breakers', error: "other processes' unknown: connection refused" },
      { part: 'processes', error: "other processes' unknown: connection refused" },
    ]);

    // Its parts unreadable too: its row still shows, with none known.
    const noParts = await buildDashboardSnapshot(
      sources({
        processes: refused,
        self: 'api-1',
        identity,
        parts: () => {
          throw new Error('no group');
        },
      }),
    );
    expect(noParts.processes!.map((p) => [p.id, p.status, p.parts])).toEqual([['api-1', 'live', {}]]);

    // Without knowing who it is (or its id), it shows no row, and the card says why as it is.
    for (const unknown of [
      sources({ processes: refused, self: 'api-1', parts }),
      sources({ processes: refused, identity, parts }),
    ]) {
      const alone = await buildDashboardSnapshot(unknown);
      expect(alone.processes).toBeNull();
      expect(alone.unavailable).toContainEqual({ part: 'processes', error: 'connection refused' });
    }
  });

  it('shows this process, live with its parts read now, among the rows when its own is not there', async () => {
    // Its first beat failed: the table answers, without its row.
    const parts = (): Record<string, ServiceHealth> => ({
      'process-heartbeat': {
        status: 'failing',
        dependency: 'database',
        during: 'beat',
        since: referenceInstant - 20_000,
        failures: 4,
        lastError: Object.assign(new Error('permission denied for table processes'), { code: '42501' }),
        lastContactAt: undefined,
      },
    });
    const identity = () => ({
      roles: ['api'],
      host: 'node-9',
      pid: 77,
      startedAt: referenceInstant - 20_000,
    });
    // One started after it: it takes its place among the rows by its start.
    const later = row('relay-2', ['relay'], 1000, { startedAt: referenceInstant - 10_000 });
    const withRows = (written: ProcessRecord[]): DashboardSources =>
      sources({ processes: async () => [...written, later], self: 'api-2', identity, parts });

    const unwritten = await buildDashboardSnapshot(withRows(rows));
    expect(unwritten.unavailable).toEqual([]);
    expect(unwritten.processes!.map((p) => [p.id, p.status, p.self])).toEqual([
      ['api-1', 'live', false],
      ['relay-1', 'live', false],
      ['worker-0', 'stale', false],
      ['worker-1', 'stopped', false],
      ['api-2', 'live', true],
      ['relay-2', 'live', false],
    ]);
    expect(unwritten.processes![4]).toEqual({
      id: 'api-2',
      roles: ['api'],
      host: 'node-9',
      pid: 77,
      startedAt: '2025-12-31T23:59:40.000Z',
      // It serves the page: seen now.
      lastSeenAt: '2026-01-01T00:00:00.000Z',
      stoppedAt: null,
      status: 'live',
      self: true,
      parts: {
        'process-heartbeat': {
          status: 'failing',
          dependency: 'database',
          during: 'beat',
          since: '2025-12-31T23:59:40.000Z',
          failures: 4,
          error: '42501',
        },
      },
    });

    // Its row written: shown once, from the row, with its parts read now.
    const own = row('api-2', ['api'], 3000, {
      host: 'node-9',
      pid: 77,
      startedAt: referenceInstant - 20_000,
    });
    const written = await buildDashboardSnapshot(withRows([...rows, own]));
    const shown = written.processes!.filter((p) => p.id === 'api-2');
    expect(shown).toEqual([
      expect.objectContaining({ self: true, status: 'live', lastSeenAt: '2025-12-31T23:59:57.000Z' }),
    ]);
    expect(shown[0]!.parts['process-heartbeat']).toMatchObject({ status: 'failing', error: '42501' });

    // Without knowing who it is, only the rows show.
    const unknown = await buildDashboardSnapshot(
      sources({ processes: async () => rows, self: 'api-2', parts }),
    );
    expect(unknown.processes!.map((p) => p.id)).toEqual(['api-1', 'relay-1', 'worker-0', 'worker-1']);
  });

  it("falls back to its own row's parts when they cannot be read now, or no source is given", async () => {
    const broken = await buildDashboardSnapshot(
      sources({
        processes: async () => rows,
        self: 'api-1',
        parts: () => {
          throw new Error('no group');
        },
      }),
    );
    expect(broken.processes![0]!.parts).toEqual({ 'process-heartbeat': { status: 'ok' } });
    expect(broken.unavailable).toEqual([]);
    const none = await buildDashboardSnapshot(sources({ processes: async () => rows, self: 'api-1' }));
    expect(none.processes![0]!.parts).toEqual({ 'process-heartbeat': { status: 'ok' } });
  });
});
