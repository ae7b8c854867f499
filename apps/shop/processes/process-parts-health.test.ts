import { describe, expect, it } from 'vitest';
import { migrate, type Queryable } from '../../../src/db/index.ts';
import {
  HealthRecord,
  ServiceBase,
  ServiceGroup,
  type ReportsHealth,
  type ServiceHealth,
} from '../../../src/service/index.ts';
import { createTestDb, type TestDb } from '../../../src/testing/index.ts';
import { ManualClock, referenceInstant } from '../../../src/time/index.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { partsHealthAsTheyRan, partsHealthReport, type PartsHealth } from './parts-health.ts';
import { ProcessHeartbeat } from './process-heartbeat.ts';
import { listProcesses, markProcessStopped, writeHeartbeat, type ProcessRecord } from './processes-store.ts';

/** A database with only the table these tests touch, with its health column (0009). */
async function processesDb(): Promise<TestDb> {
  const db = await createTestDb({ schemaPrefix: 'processes' });
  const ids = new Set(['0006_processes', '0009_process_health']);
  await migrate(
    db,
    (await shopMigrations()).filter((m) => ids.has(m.id)),
  );
  return db;
}

async function rowOf(db: Queryable, id: string): Promise<ProcessRecord> {
  const row = (await listProcesses(db)).find((r) => r.id === id);
  if (row === undefined) throw new Error(`no row ${id}`);
  return row;
}

/** A part that does nothing but keep the health record its test writes to: a relay, say. */
class Part extends ServiceBase implements ReportsHealth {
  readonly record: HealthRecord<'database' | 'broker'>;
  constructor(name: string, clock: ManualClock) {
    super(name, clock);
    this.record = new HealthRecord(clock, { database: {}, broker: {} });
  }
  health(): ServiceHealth {
    return this.record.health(this.state);
  }
  protected async onStart(): Promise<void> {
    this.record.started();
  }
  protected async onStop(): Promise<void> {}
}

/** A refused connection, as a client library throws it: its code is what the row keeps. */
const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:5672 (user shop)'), {
  code: 'ECONNREFUSED',
});

/** A heartbeat and a relay in one group, the heartbeat first, as the shop builds them. */
function processOf(
  db: Queryable,
  clock: ManualClock,
): { heartbeat: ProcessHeartbeat; relay: Part; group: ServiceGroup } {
  const relay = new Part('outbox-relay', clock);
  // The group is built after the heartbeat, which reads it only once it beats.
  const heartbeat = new ProcessHeartbeat({
    db,
    clock,
    roles: ['relay'],
    host: 'node-1',
    pid: 42,
    health: () => partsHealthReport(group.healthOfParts()),
  });
  const group: ServiceGroup = new ServiceGroup('shop', [heartbeat, relay]);
  return { heartbeat, relay, group };
}

describe("ProcessHeartbeat: its parts' health on its row", () => {
  it('writes what the parts say at each beat: a relay that lost its broker shows on a live row', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const { heartbeat, relay, group } = processOf(db, clock);
    await group.start();
    try {
      // At its first beat the heartbeat itself is still starting; the relay, not started yet, too.
      expect((await rowOf(db, heartbeat.id)).health).toEqual({
        'process-heartbeat': { status: 'not-running', state: 'starting' },
        'outbox-relay': { status: 'not-running', state: 'idle' },
      });

      relay.record.succeeded('database');
      await clock.advance(1000);
      relay.record.failed('broker', refused, 'publish');
      // Not written until the next beat: one jsonb with the row, no write of its own.
      expect((await rowOf(db, heartbeat.id)).health['outbox-relay']).toEqual({
        status: 'not-running',
        state: 'idle',
      });
      const beat = heartbeat.events.once('beat');
      await clock.advance(4000);
      await beat;
      expect((await rowOf(db, heartbeat.id)).health).toEqual({
        'process-heartbeat': { status: 'ok', lastContactAt: '2026-01-01T00:00:00.000Z' },
        'outbox-relay': {
          status: 'failing',
          dependency: 'broker',
          during: 'publish',
          since: '2026-01-01T00:00:01.000Z',
          failures: 1,
          // The code only: the message names a host and a user.
          error: 'ECONNREFUSED',
        },
      });

      // The next success clears it, at the next beat.
      relay.record.succeeded('broker');
      const next = heartbeat.events.once('beat');
      await clock.advance(5000);
      await next;
      expect((await rowOf(db, heartbeat.id)).health['outbox-relay']).toEqual({
        status: 'ok',
        lastContactAt: '2026-01-01T00:00:05.000Z',
      });
    } finally {
      await group.stop();
    }
  });

  it('keeps, on a stop, what the parts said while they ran rather than that they stopped', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const { heartbeat, relay, group } = processOf(db, clock);
    await group.start();
    relay.record.failed('broker', refused, 'publish');
    const beat = heartbeat.events.once('beat');
    await clock.advance(5000);
    await beat;
    // A beat while the process stops says what it reads: the relay has stopped.
    await relay.stop();
    const stopping = heartbeat.events.once('beat');
    await clock.advance(5000);
    await stopping;
    expect((await rowOf(db, heartbeat.id)).health['outbox-relay']).toEqual({
      status: 'not-running',
      state: 'stopped',
    });
    await clock.advance(1000);
    // The heartbeat stops last: read then, every part would say only that it stopped.
    await group.stop();
    const row = await rowOf(db, heartbeat.id);
    expect(row.stoppedAt).toBe(referenceInstant + 11_000);
    expect(row.health).toEqual({
      'process-heartbeat': { status: 'ok', lastContactAt: '2026-01-01T00:00:05.000Z' },
      'outbox-relay': {
        status: 'failing',
        dependency: 'broker',
        during: 'publish',
        since: '2026-01-01T00:00:00.000Z',
        failures: 1,
        error: 'ECONNREFUSED',
      },
    });
  });

  it('writes its row without the parts when they cannot be read, and says so', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const heartbeat = new ProcessHeartbeat({
      db,
      clock,
      roles: ['api'],
      health: () => {
        throw new Error('group not built');
      },
    });
    const errors: string[] = [];
    heartbeat.events.on('error', ({ error, during }) => errors.push(`${during}: ${String(error)}`));
    await heartbeat.start();
    try {
      expect(errors).toEqual(['read parts health: Error: group not built']);
      expect((await rowOf(db, heartbeat.id)).health).toEqual({});
      // Its database answered: the beat is not failing for it.
      expect(heartbeat.health()).toMatchObject({ status: 'ok' });
    } finally {
      await heartbeat.stop();
    }
    expect((await rowOf(db, heartbeat.id)).stoppedAt).not.toBeNull();
  });

  it('writes {} for a process that reports no parts', async () => {
    await using db = await processesDb();
    const clock = new ManualClock();
    const heartbeat = new ProcessHeartbeat({ db, clock, roles: ['api'] });
    await heartbeat.start();
    await heartbeat.stop();
    expect((await rowOf(db, heartbeat.id)).health).toEqual({});
  });
});

describe('the health column of processes', () => {
  const record = (id: string, health: PartsHealth): Omit<ProcessRecord, 'stoppedAt'> => ({
    id,
    roles: ['worker'],
    host: 'node-2',
    pid: 7,
    startedAt: referenceInstant,
    lastSeenAt: referenceInstant,
    heartbeatMs: 5000,
    breakers: [],
    health,
  });

  it('reads back what a beat wrote, replaces it at the next, and keeps it on a stopped row', async () => {
    await using db = await processesDb();
    const id = '01900000-0000-7000-8000-000000000001';
    const failing: PartsHealth = {
      worker: {
        status: 'failing',
        dependency: 'database',
        since: '2026-01-01T00:00:00.000Z',
        failures: 0,
      },
    };
    await writeHeartbeat(db, record(id, failing));
    expect((await rowOf(db, id)).health).toEqual(failing);
    await writeHeartbeat(db, {
      ...record(id, { worker: { status: 'ok' } }),
      lastSeenAt: referenceInstant + 5000,
    });
    expect((await rowOf(db, id)).health).toEqual({ worker: { status: 'ok' } });

    await markProcessStopped(db, id, referenceInstant + 6000, [], failing);
    expect((await rowOf(db, id)).health).toEqual(failing);
    // A late beat changes nothing on a stopped row.
    await writeHeartbeat(db, { ...record(id, {}), lastSeenAt: referenceInstant + 7000 });
    expect((await rowOf(db, id)).health).toEqual(failing);
  });

  it('reads {} from a row written without it: a process of a version before 0009', async () => {
    await using db = await processesDb();
    await db.query(
      `INSERT INTO processes (id, roles, host, pid, started_at, last_seen_at, heartbeat_ms)
       VALUES ('01900000-0000-7000-8000-000000000002', '{api}', 'node-3', 9, now(), now(), 5000)`,
    );
    expect((await listProcesses(db))[0]!.health).toEqual({});
  });
});

describe('partsHealthAsTheyRan', () => {
  it('keeps the earlier report of a part that stopped, and the one read now of any other', () => {
    const lastBeat: PartsHealth = {
      relay: { status: 'failing', dependency: 'broker', since: '2026-01-01T00:00:00.000Z', failures: 2 },
      worker: { status: 'ok' },
    };
    expect(
      partsHealthAsTheyRan(
        {
          relay: { status: 'not-running', state: 'stopped' },
          // Failed since the last beat: that is news, not the stop.
          worker: { status: 'not-running', state: 'failed' },
          'process-heartbeat': { status: 'not-running', state: 'stopping' },
          // Started after the last beat: nothing earlier to keep.
          pruner: { status: 'not-running', state: 'stopped' },
        },
        lastBeat,
      ),
    ).toEqual({
      relay: lastBeat.relay,
      worker: { status: 'not-running', state: 'failed' },
      'process-heartbeat': { status: 'not-running', state: 'stopping' },
      pruner: { status: 'not-running', state: 'stopped' },
    });
  });
});
