// The table relay's health() against a real PostgreSQL (a server of the file's own, from
// startPgServer) that stops letting the relay in: its role loses LOGIN and its connections are
// ended, so every new connection, and with it every claim, fails. The relay names the database
// while that lasts, and is ok again once the role may log in. The unit tests are in
// src/outbox/outbox-relay-health.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../until.ts';
import { migrate, openPgDb, type Db } from '../../src/db/index.ts';
import type { Envelope, Publisher } from '../../src/messaging/index.ts';
import { OutboxRelay, outboxMigrations } from '../../src/outbox/index.ts';
import type { ServiceHealth } from '../../src/service/index.ts';
import { startPgServer, type PgServer } from '../../src/testing/index.ts';

let server: PgServer;
let admin: Db;
const role = 'keel_relay_health';
const schema = 'relay_health';

beforeAll(async () => {
  server = await startPgServer({ walLevel: 'replica' });
  admin = await openPgDb({ url: server.url, schema });
  await migrate(admin, outboxMigrations);
  // A superuser of its own: no grants to keep, and NOLOGIN still shuts it out.
  await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER`);
}, 60_000);

afterAll(async () => {
  await admin?.close();
  await server?.stop();
});

const publisher: Publisher = { publish: async (_d: string, _m: readonly Envelope[]) => undefined };

describe('OutboxRelay health() on a real server', () => {
  it('names the database while the server refuses its connections, and is ok again once it lets them in', async () => {
    const url = new URL(server.url);
    url.username = role;
    const relayDb = await openPgDb({ url: url.toString(), schema, poolSize: 2 });
    const relay = new OutboxRelay(relayDb, publisher, { pollIntervalMs: 50, retentionMs: false });
    const errors: string[] = [];
    relay.events.on('error', ({ during }) => errors.push(during));
    await relay.start();
    try {
      expect(relay.health()).toMatchObject({ status: 'ok' });

      await admin.query(`ALTER ROLE ${role} NOLOGIN`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]);
      await until(() => relay.health().status === 'failing', 15_000, 'the database failing');
      const failing = relay.health() as Extract<ServiceHealth, { status: 'failing' }>;
      expect(failing).toMatchObject({ dependency: 'database', during: 'claim' });
      expect(failing.failures).toBeGreaterThanOrEqual(1);
      expect(String(failing.lastError)).toMatch(/not permitted to log in|terminating connection/);

      await admin.query(`ALTER ROLE ${role} LOGIN`);
      await until(() => relay.health().status === 'ok', 15_000, 'the database ok again');
      expect(errors).toContain('relay');
    } finally {
      await relay.stop();
      await relayDb.close();
    }
    expect(relay.health()).toEqual({ status: 'not-running', state: 'stopped' });
  }, 60_000);
});
