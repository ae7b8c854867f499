// Read-your-writes against a real streaming replica: the suite starts its own primary and hot
// standby (PostgreSQL 15 binaries, see startReplicaCluster) on free ports and removes them after.
// It never skips: without the binaries it fails, naming them.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openPgDb, type PgDb } from '../../src/db/index.ts';
import { startReplicaCluster, type ReplicaCluster } from '../../src/testing/index.ts';
import { sleep, systemClock } from '../../src/time/index.ts';
import { ConsistencyToken, currentToken } from '../../src/consistency/consistency-token.ts';
import { ReadYourWritesDb, type ReadEvent } from '../../src/consistency/read-your-writes-db.ts';

let cluster: ReplicaCluster | undefined;
let primary: PgDb;
let replica: PgDb;

async function replayPosition(): Promise<ConsistencyToken> {
  const { rows } = await replica.query<{ lsn: string }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
  return ConsistencyToken.parse(rows[0]!.lsn);
}

/** Real time: the replica replays on its own schedule. */
async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = systemClock.now() + timeoutMs;
  while (!(await check())) {
    if (systemClock.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

async function pauseReplay(): Promise<void> {
  await replica.query('SELECT pg_wal_replay_pause()');
  await eventually('replay paused', async () => {
    const { rows } = await replica.query<{ state: string }>(
      'SELECT pg_get_wal_replay_pause_state() AS state',
    );
    return rows[0]!.state === 'paused';
  });
}

async function resumeReplay(): Promise<void> {
  await replica.query('SELECT pg_wal_replay_resume()');
}

async function replayed(token: ConsistencyToken): Promise<void> {
  await eventually(`replica replayed ${token.toString()}`, async () =>
    (await replayPosition()).covers(token),
  );
}

function router(options: { maxReplicaWaitMs?: number } = {}): { db: ReadYourWritesDb; events: ReadEvent[] } {
  const db = new ReadYourWritesDb({ primary, replica, pollIntervalMs: 10, ...options });
  const events: ReadEvent[] = [];
  db.on('read', (event) => events.push(event));
  return { db, events };
}

let nextId = 0;
async function placeOrder(db: ReadYourWritesDb): Promise<{ id: number; token: ConsistencyToken }> {
  const id = ++nextId;
  const { token } = await db.write((tx) => tx.query("INSERT INTO orders VALUES ($1, 'PENDING')", [id]));
  return { id, token };
}

async function findOrder(
  db: ReadYourWritesDb,
  id: number,
  token?: ConsistencyToken,
  maxReplicaWaitMs?: number,
) {
  const { rows } = await db.query<{ status: string }>('SELECT status FROM orders WHERE id = $1', [id], {
    token,
    ...(maxReplicaWaitMs === undefined ? {} : { maxReplicaWaitMs }),
  });
  return rows[0]?.status;
}

describe('read-your-writes against a streaming replica', () => {
  beforeAll(async () => {
    cluster = await startReplicaCluster();
    primary = await openPgDb({ url: cluster.primaryUrl, poolSize: 4, applicationName: 'keel-test-primary' });
    await primary.query('CREATE TABLE orders (id integer PRIMARY KEY, status text NOT NULL)');
    const created = await currentToken(primary);
    replica = await openPgDb({ url: cluster.replicaUrl, poolSize: 4, applicationName: 'keel-test-replica' });
    await replayed(created);
  }, 60_000);

  afterEach(async () => {
    // A failed test must not leave replay paused for the next one.
    await resumeReplay().catch(() => undefined);
  });

  afterAll(async () => {
    await replica?.close();
    await primary?.close();
    await cluster?.stop();
  });

  it('the replica really is a streaming standby', async () => {
    const { rows } = await replica.query<{ recovery: boolean; status: string }>(
      'SELECT pg_is_in_recovery() AS recovery, (SELECT status FROM pg_stat_wal_receiver) AS status',
    );
    expect(rows).toEqual([{ recovery: true, status: 'streaming' }]);
  });

  it('while the replica lags, a read with the fresh token goes to the primary and one without to the replica; once it caught up, the replica serves the token', async () => {
    const { db, events } = router();
    await pauseReplay();
    const { id, token } = await placeOrder(db);
    expect((await replayPosition()).covers(token)).toBe(false);

    expect(await findOrder(db, id, token)).toBe('PENDING');
    expect(events.at(-1)).toMatchObject({ servedBy: 'primary', reason: 'replica-behind', waitedMs: 0 });

    // No token: the replica answers, and it has not seen the order yet.
    expect(await findOrder(db, id)).toBeUndefined();
    expect(events.at(-1)).toMatchObject({ servedBy: 'replica', reason: 'no-token' });

    await resumeReplay();
    await replayed(token);
    expect(await findOrder(db, id, token)).toBe('PENDING');
    expect(events.at(-1)).toMatchObject({ servedBy: 'replica', reason: 'replica-caught-up', waitedMs: 0 });
  });

  it('with maxReplicaWaitMs, a read waits for the replica to replay and is then served by it', async () => {
    const { db, events } = router({ maxReplicaWaitMs: 10_000 });
    await pauseReplay();
    const { id, token } = await placeOrder(db);
    const started = systemClock.now();
    const read = findOrder(db, id, token);
    await sleep(300);
    expect(events).toEqual([]);
    await resumeReplay();
    expect(await read).toBe('PENDING');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ servedBy: 'replica', reason: 'replica-caught-up' });
    expect(events[0]!.waitedMs).toBeGreaterThanOrEqual(250);
    expect(events[0]!.waitedMs).toBeLessThanOrEqual(systemClock.now() - started);
  });

  it('a wait that runs out goes to the primary', async () => {
    const { db, events } = router();
    await pauseReplay();
    const { id, token } = await placeOrder(db);
    const started = systemClock.now();
    expect(await findOrder(db, id, token, 200)).toBe('PENDING');
    // The 200 ms bound the whole read, the first check of the replica included.
    expect(systemClock.now() - started).toBeGreaterThanOrEqual(200);
    expect(events[0]).toMatchObject({ servedBy: 'primary', reason: 'replica-behind' });
    expect(events[0]!.waitedMs).toBeGreaterThan(100);
    expect(events[0]!.waitedMs).toBeLessThan(1000);
  });

  it('the token is exact enough: no read with a token ever misses its write, under a replica that keeps up', async () => {
    const { db, events } = router({ maxReplicaWaitMs: 2000 });
    for (let i = 0; i < 30; i++) {
      const { id, token } = await placeOrder(db);
      expect(await findOrder(db, id, token)).toBe('PENDING');
    }
    expect(events).toHaveLength(30);
    // Streaming on one host keeps up within the wait: the replica, not the primary, served the reads.
    expect(events.filter((e) => e.servedBy === 'replica').length).toBeGreaterThan(20);
  });
});

describe('startReplicaCluster without the server binaries', () => {
  it('fails naming the binaries and the directory it looked in, never skips', async () => {
    await expect(startReplicaCluster({ binDir: '/nonexistent/pg/bin' })).rejects.toThrow(
      "the replica cluster needs PostgreSQL's server binaries initdb, pg_ctl, pg_basebackup, postgres in /nonexistent/pg/bin; missing: initdb, pg_ctl, pg_basebackup, postgres",
    );
  });
});
