import { describe, expect, it } from 'vitest';
import { migrate, type Queryable, type QueryResult } from '../../../src/db/index.ts';
import { CircuitBreakerPolicy, TimeoutPolicy } from '../../../src/resilience/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../../../src/testing/index.ts';
import { ManualClock, referenceInstant } from '../../../src/time/index.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { ProcessHeartbeat, type ProcessHeartbeatOptions } from './process-heartbeat.ts';
import { listProcesses, processStatus, writeHeartbeat, type ProcessRecord } from './processes-store.ts';

/** A database with only the table these tests touch: the shop's other migrations are not theirs. */
async function processesDb(): Promise<TestDb> {
  const db = await createTestDb({ schemaPrefix: 'processes' });
  const ids = new Set(['0006_processes', '0009_process_health']);
  await migrate(
    db,
    (await shopMigrations()).filter((m) => ids.has(m.id)),
  );
  return db;
}

function heartbeatOf(
  db: Queryable,
  clock: ManualClock,
  options: Partial<ProcessHeartbeatOptions> = {},
): ProcessHeartbeat {
  return new ProcessHeartbeat({ db, clock, roles: ['api', 'worker'], host: 'node-1', pid: 42, ...options });
}

async function rowOf(db: Queryable, id: string): Promise<ProcessRecord | undefined> {
  return (await listProcesses(db)).find((row) => row.id === id);
}

describe('ProcessHeartbeat', () => {
  it('writes its row at start, refreshes it every interval, and marks it stopped on stop', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const heartbeat = heartbeatOf(db, clock);
    await heartbeat.start();
    expect(await listProcesses(db)).toEqual([
      {
        id: heartbeat.id,
        roles: ['api', 'worker'],
        host: 'node-1',
        pid: 42,
        startedAt: referenceInstant,
        lastSeenAt: referenceInstant,
        heartbeatMs: 5000,
        stoppedAt: null,
        breakers: [],
        // It was given no parts' health to write.
        health: {},
      },
    ]);

    await clock.advance(4999);
    expect((await rowOf(db, heartbeat.id))!.lastSeenAt).toBe(referenceInstant);
    const beat = heartbeat.events.once('beat');
    await clock.advance(1);
    expect(await beat).toEqual({ at: referenceInstant + 5000, pruned: 0 });
    expect((await rowOf(db, heartbeat.id))!.lastSeenAt).toBe(referenceInstant + 5000);

    await clock.advance(2000);
    await heartbeat.stop();
    const stopped = (await rowOf(db, heartbeat.id))!;
    expect(stopped).toMatchObject({
      stoppedAt: referenceInstant + 7000,
      lastSeenAt: referenceInstant + 7000,
    });
    expect(processStatus(stopped, clock.now())).toBe('stopped');
    expect(clock.pendingTimers).toBe(0);
    // A late refresh (a beat asked for after the stop, another write of the same id) does not
    // bring a stopped process back.
    await heartbeat.beat();
    await writeHeartbeat(db, { ...stopped, lastSeenAt: clock.now() + 1000 });
    expect((await rowOf(db, heartbeat.id))!.stoppedAt).toBe(referenceInstant + 7000);
  });

  it('gives each start a row of its own: a restart is a new process', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const first = heartbeatOf(db, clock);
    await first.start();
    await first.stop();
    await clock.advance(1000);
    const second = heartbeatOf(db, clock);
    await second.start();
    try {
      expect(second.id).not.toBe(first.id);
      const rows = await listProcesses(db);
      expect(rows.map((row) => [row.id, processStatus(row, clock.now())])).toEqual([
        [first.id, 'stopped'],
        [second.id, 'live'],
      ]);
    } finally {
      await second.stop();
    }
  });

  it('writes its breakers with each beat, and at once when one changes state', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const breaker = new CircuitBreakerPolicy({
      clock,
      openMs: 8000,
      threshold: { kind: 'consecutive', failures: 1 },
    });
    const heartbeat = heartbeatOf(db, clock, {
      // Only breakers are written: the other policies are not.
      policies: { payments: breaker, 'payments.timeout': new TimeoutPolicy(2000, { clock }) },
    });
    await heartbeat.start();
    try {
      expect((await rowOf(db, heartbeat.id))!.breakers).toEqual([
        { name: 'payments', state: 'closed', since: referenceInstant },
      ]);

      // No clock moves: the write comes from the breaker's change, not the next beat.
      await clock.advance(1000);
      const opened = heartbeat.events.once('beat');
      await expect(breaker.execute(() => Promise.reject(new Error('provider down')))).rejects.toThrow(
        'provider down',
      );
      expect((await opened).at).toBe(referenceInstant + 1000);
      expect((await rowOf(db, heartbeat.id))!.breakers).toEqual([
        {
          name: 'payments',
          state: 'open',
          since: referenceInstant + 1000,
          until: referenceInstant + 9000,
          reason: 'consecutive-failures',
        },
      ]);

      // Open turns half-open when read after openMs (as of its end): here by the beat at 10 s.
      // Step by step: on a server each beat's write takes real time before the next is set.
      await advanceUntil(
        clock,
        heartbeat.events.once('beat', { filter: ({ at }) => at === referenceInstant + 10_000 }),
      );
      expect((await rowOf(db, heartbeat.id))!.breakers).toMatchObject([
        { name: 'payments', state: 'half-open', since: referenceInstant + 9000 },
      ]);
    } finally {
      await heartbeat.stop();
    }
    expect(clock.pendingTimers).toBe(0);
  });

  it('goes stale when its writes stop without a stop, and live again when they resume', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    let cutOff = true;
    const flaky: Queryable = {
      query: <R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> =>
        cutOff ? Promise.reject(new Error('connection refused')) : db.query<R>(sql, params),
    };
    const heartbeat = heartbeatOf(flaky, clock);
    const errors: string[] = [];
    heartbeat.events.on('error', ({ error, during }) => errors.push(`${during}: ${String(error)}`));
    expect(heartbeat.health()).toEqual({ status: 'not-running', state: 'idle' });
    // Unable to say it is alive, it still starts: the process goes on working.
    await heartbeat.start();
    expect(errors).toEqual(['beat: Error: connection refused']);
    expect(await listProcesses(db)).toEqual([]);
    expect(heartbeat.health()).toMatchObject({
      status: 'failing',
      dependency: 'database',
      during: 'beat',
      failures: 1,
    });
    cutOff = false;
    await heartbeat.beat();
    expect(heartbeat.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });

    cutOff = true;
    const read = async () => processStatus((await rowOf(db, heartbeat.id))!, clock.now());
    // Three beats of 5 s may be missed; not a fourth.
    for (let beat = 1; beat <= 3; beat++) {
      const failed = heartbeat.events.once('error');
      await clock.advance(5000);
      await failed;
    }
    expect(await read()).toBe('live');
    expect(heartbeat.health()).toMatchObject({ status: 'failing', failures: 3 });
    await clock.advance(1);
    expect(await read()).toBe('stale');

    cutOff = false;
    const back = heartbeat.events.once('beat');
    await clock.advance(4999);
    await back;
    expect(await read()).toBe('live');
    expect(heartbeat.health()).toMatchObject({ status: 'ok' });
    expect(errors).toHaveLength(4);
    await heartbeat.stop();
    expect(await read()).toBe('stopped');
    expect(heartbeat.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('deletes rows of any process not seen for retainMs, stopped or stale, and keeps the rest', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const old = (id: string, lastSeenAt: number, stoppedAt: number | null = null): ProcessRecord => ({
      id,
      roles: ['worker'],
      host: 'node-2',
      pid: 7,
      startedAt: referenceInstant - 3_600_000,
      lastSeenAt,
      heartbeatMs: 5000,
      stoppedAt,
      breakers: [],
      health: {},
    });
    const crashed = old('01900000-0000-7000-8000-000000000001', referenceInstant - 60_001);
    const recent = old('01900000-0000-7000-8000-000000000002', referenceInstant - 30_000);
    for (const row of [crashed, recent]) await writeHeartbeat(db, row);

    const heartbeat = heartbeatOf(db, clock, { retainMs: 60_000 });
    const first = heartbeat.events.once('beat');
    await heartbeat.start();
    try {
      expect(await first).toEqual({ at: referenceInstant, pruned: 1 });
      expect((await listProcesses(db)).map((row) => row.id)).toEqual([recent.id, heartbeat.id]);

      // 30 s later the recent one is past the hour's stand-in too; the live one never is.
      const later = await advanceUntil(
        clock,
        heartbeat.events.once('beat', { filter: ({ pruned }) => pruned > 0 }),
      );
      expect(later.at).toBe(referenceInstant + 35_000);
      expect((await listProcesses(db)).map((row) => row.id)).toEqual([heartbeat.id]);
    } finally {
      await heartbeat.stop();
    }
  });

  it('names the option that is wrong', () => {
    const clock = new ManualClock();
    const db: Queryable = { query: () => Promise.reject(new Error('unused')) };
    expect(() => heartbeatOf(db, clock, { intervalMs: 0 })).toThrow(/intervalMs/);
    expect(() => heartbeatOf(db, clock, { intervalMs: 2.5 })).toThrow(/intervalMs/);
    // Rows of live processes would be deleted before they could be called stale.
    expect(() => heartbeatOf(db, clock, { intervalMs: 5000, retainMs: 15_000 })).toThrow(/retainMs/);
  });
});

describe('ProcessHeartbeat.health()', () => {
  it('calls a beat that hangs failing once readers would call its row stale', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    let hang = false;
    const hanging: Queryable = {
      query: <R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> =>
        hang ? new Promise<QueryResult<R>>(() => undefined) : db.query<R>(sql, params),
    };
    const heartbeat = heartbeatOf(hanging, clock);
    await heartbeat.start();
    const answered = clock.now();
    hang = true;
    await clock.advance(15_000);
    expect(heartbeat.health()).toEqual({ status: 'ok', lastContactAt: answered });
    await clock.advance(1);
    expect(heartbeat.health()).toEqual({
      status: 'failing',
      dependency: 'database',
      during: undefined,
      since: answered + 15_000,
      failures: 0,
      lastError: undefined,
      lastContactAt: answered,
    });
  });
});
