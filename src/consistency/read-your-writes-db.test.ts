import { describe, expect, it } from 'vitest';
import type { Db, QueryResult, Row, Tx } from '../db/index.ts';
import { AbortedError, KeelError } from '../errors/index.ts';
import { createTestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { ConsistencyToken } from './consistency-token.ts';
import { ReadYourWritesDb, type ReadEvent } from './read-your-writes-db.ts';

/**
 * A stand-in for a server: answers keel's position queries from `position`, and any other
 * statement with `{ who: name }`. The routing logic is tested here on a manual clock; the real
 * streaming replica is in test/integration/read-your-writes-replica.test.ts.
 */
class FakeDb implements Db {
  readonly dialect = 'pg' as const;
  readonly schema = 'public';
  /** The replay position (a standby), or null for a server that is not one. */
  position: string | null = '0/100';
  insertPosition = 0x100n;
  down = false;
  statements: string[] = [];

  constructor(readonly name: string) {}

  async query<R = Row>(sql: string): Promise<QueryResult<R>> {
    if (this.down) throw new KeelError('KEEL_DB_UNAVAILABLE', `${this.name} is down`);
    this.statements.push(sql);
    let row: Row;
    if (sql.includes('pg_last_wal_replay_lsn')) row = { lsn: this.position };
    else if (sql.includes('pg_current_wal_insert_lsn'))
      row = { lsn: ConsistencyToken.fromLsn(this.insertPosition).toString() };
    else row = { who: this.name };
    return { rows: [row as R], rowCount: 1 };
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.down) throw new KeelError('KEEL_DB_UNAVAILABLE', `${this.name} is down`);
    return fn(this);
  }

  listen(): never {
    throw new Error('not used');
  }

  async close(): Promise<void> {}
}

function setup(options: { maxReplicaWaitMs?: number } = {}) {
  const clock = new ManualClock(0);
  const primary = new FakeDb('primary');
  const replica = new FakeDb('replica');
  const router = new ReadYourWritesDb({ primary, replica, clock, pollIntervalMs: 10, ...options });
  const events: ReadEvent[] = [];
  router.on('read', (event) => events.push(event));
  const who = (token?: ConsistencyToken, extra: { maxReplicaWaitMs?: number; signal?: AbortSignal } = {}) =>
    router.query<{ who: string }>('SELECT who', [], { token, ...extra }).then((r) => r.rows[0]!.who);
  return { clock, primary, replica, router, events, who };
}

const token = (text: string): ConsistencyToken => ConsistencyToken.parse(text);

describe('ReadYourWritesDb routing', () => {
  it('a write returns the primary position after its commit as its token', async () => {
    const { router, primary } = setup();
    primary.insertPosition = 0x2abcn;
    const written = await router.write(async (tx) => (await tx.query('INSERT')).rowCount);
    expect(written).toEqual({ value: 1, token: token('0/2ABC') });
    expect(primary.statements).toEqual(['INSERT', 'SELECT pg_current_wal_insert_lsn()::text AS lsn']);
  });

  it('without a token the replica serves the read, whatever its position', async () => {
    const { who, events, replica } = setup();
    replica.position = '0/0';
    expect(await who()).toBe('replica');
    expect(events).toEqual([{ servedBy: 'replica', reason: 'no-token', waitedMs: 0, token: undefined }]);
    expect(replica.statements).toEqual(['SELECT who']);
  });

  it('with a token the replica has replayed, the replica serves it, checked in the same transaction', async () => {
    const { who, events, replica } = setup();
    replica.position = '0/200';
    expect(await who(token('0/200'))).toBe('replica');
    expect(events[0]).toMatchObject({ servedBy: 'replica', reason: 'replica-caught-up', waitedMs: 0 });
    expect(replica.statements).toEqual(['SELECT pg_last_wal_replay_lsn()::text AS lsn', 'SELECT who']);
  });

  it('with a token past the replica, the primary serves it, without waiting by default', async () => {
    const { who, events, clock } = setup();
    expect(await who(token('0/201'))).toBe('primary');
    expect(events[0]).toMatchObject({ servedBy: 'primary', reason: 'replica-behind', waitedMs: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('waits up to maxReplicaWaitMs for the replica, polling, then reads from it', async () => {
    const { who, events, clock, replica } = setup({ maxReplicaWaitMs: 100 });
    const read = who(token('0/300'));
    await clock.advance(30);
    expect(events).toEqual([]);
    replica.position = '0/300';
    await clock.advance(10);
    expect(await read).toBe('replica');
    expect(events).toEqual([
      { servedBy: 'replica', reason: 'replica-caught-up', waitedMs: 40, token: token('0/300') },
    ]);
  });

  it('after waiting maxReplicaWaitMs in vain, the primary serves it', async () => {
    const { who, events, clock } = setup();
    const read = who(token('0/300'), { maxReplicaWaitMs: 55 });
    await clock.advance(54);
    expect(events).toEqual([]);
    await clock.advance(1);
    expect(await read).toBe('primary');
    expect(events[0]).toMatchObject({ servedBy: 'primary', reason: 'replica-behind', waitedMs: 55 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('an abort ends the wait at once with AbortedError', async () => {
    const { who, clock } = setup({ maxReplicaWaitMs: 1000 });
    const controller = new AbortController();
    const read = who(token('0/300'), { signal: controller.signal }).catch((error: unknown) => error);
    await clock.advance(20);
    controller.abort();
    expect(await read).toBeInstanceOf(AbortedError);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a replica that polls as caught up but whose transaction does not (another server behind a balancer) goes to the primary', async () => {
    const { router, replica, events, clock } = setup({ maxReplicaWaitMs: 100 });
    let checks = 0;
    const query = replica.query.bind(replica);
    replica.query = async <R>(sql: string): Promise<QueryResult<R>> => {
      if (sql.includes('pg_last_wal_replay_lsn')) {
        checks += 1;
        // Checks in a transaction (1st, 3rd) hit the lagging server; the poll (2nd) the fresh one.
        replica.position = checks === 2 ? '0/300' : '0/100';
      }
      return query<R>(sql);
    };
    const read = router.query<{ who: string }>('SELECT who', [], { token: token('0/300') });
    await clock.advance(10);
    expect((await read).rows[0]!.who).toBe('primary');
    expect(checks).toBe(3);
    expect(events[0]).toMatchObject({ servedBy: 'primary', reason: 'replica-behind' });
  });

  it('a replica that is no standby (position NULL) never serves a read with a token', async () => {
    const { who, events, replica, clock } = setup({ maxReplicaWaitMs: 100 });
    replica.position = null;
    expect(await who(token('0/1'))).toBe('primary');
    expect(events[0]).toMatchObject({ servedBy: 'primary', reason: 'replica-not-standby', waitedMs: 0 });
    expect(clock.pendingTimers).toBe(0);
    expect(await who()).toBe('replica');
  });

  it('a replica that is down sends reads to the primary (fallbackOnReplicaDown), or fails when turned off', async () => {
    const { who, events, replica } = setup();
    replica.down = true;
    expect(await who()).toBe('primary');
    expect(await who(token('0/1'))).toBe('primary');
    expect(events.map((e) => e.reason)).toEqual(['replica-down', 'replica-down']);
    const strict = new ReadYourWritesDb({ primary: new FakeDb('p'), replica, fallbackOnReplicaDown: false });
    await expect(strict.query('SELECT who')).rejects.toThrow('replica is down');
  });

  it('an error of the read itself is not a reason to go elsewhere', async () => {
    const { router, events } = setup();
    const failure = new Error('syntax error');
    await expect(
      router.read(async () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(events).toEqual([]);
  });

  it('without a replica (or with the primary as replica) the primary serves everything', async () => {
    const primary = new FakeDb('primary');
    for (const router of [
      new ReadYourWritesDb({ primary }),
      new ReadYourWritesDb({ primary, replica: primary }),
    ]) {
      expect(router.replica).toBeUndefined();
      const events: ReadEvent[] = [];
      router.on('read', (e) => events.push(e));
      expect(
        (await router.query<{ who: string }>('SELECT who', [], { token: token('9/0') })).rows[0]!.who,
      ).toBe('primary');
      expect(events[0]).toMatchObject({ servedBy: 'primary', reason: 'no-replica' });
      expect(await router.replicaPosition()).toBeUndefined();
    }
  });

  it('refuses bad options and a token that is not a ConsistencyToken, naming them', async () => {
    const primary = new FakeDb('primary');
    expect(() => new ReadYourWritesDb({ primary: undefined as never })).toThrow(/^primary: expected a Db/);
    expect(() => new ReadYourWritesDb({ primary, replica: {} as never })).toThrow(/^replica: expected a Db/);
    expect(() => new ReadYourWritesDb({ primary, maxReplicaWaitMs: -1 })).toThrow(/^maxReplicaWaitMs:/);
    expect(() => new ReadYourWritesDb({ primary, pollIntervalMs: 0 })).toThrow(/^pollIntervalMs:/);
    const router = new ReadYourWritesDb({ primary });
    await expect(router.query('SELECT 1', [], { token: '0/1' as never })).rejects.toThrow(
      /^token: expected a ConsistencyToken/,
    );
  });
});

describe('ReadYourWritesDb on this backend without a replica', () => {
  it('every write returns a token that moves forward; every read sees it from the primary', async () => {
    await using db = await createTestDb({ schemaPrefix: 'ryw' });
    const router = new ReadYourWritesDb({ primary: db });
    await db.query('CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)');
    const first = await router.write((tx) => tx.query('INSERT INTO notes VALUES (1, $1)', ['one']));
    const second = await router.write((tx) => tx.query('INSERT INTO notes VALUES (2, $1)', ['two']));
    expect(first.value.rowCount).toBe(1);
    expect(second.token.lsn).toBeGreaterThan(first.token.lsn);
    const parsed = ConsistencyToken.parse(second.token.toString());
    const events: ReadEvent[] = [];
    router.on('read', (e) => events.push(e));
    const { rows } = await router.query('SELECT body FROM notes ORDER BY id', [], { token: parsed });
    expect(rows).toEqual([{ body: 'one' }, { body: 'two' }]);
    expect(events).toEqual([{ servedBy: 'primary', reason: 'no-replica', waitedMs: 0, token: parsed }]);
    expect((await router.token()).covers(second.token)).toBe(true);
  });
});
