// The table relay on PostgreSQL when the server ends its connections mid-work (a failover, an
// administrator's pg_terminate_backend): it goes on with new ones, loses nothing and keeps each
// key's order; what it published and could not mark comes again once its claim expires.
import { afterEach, describe, expect, it } from 'vitest';
import { defaultDatabaseUrl } from '../../src/db/open-db.ts';
import { migrate, openPgDb, type Db } from '../../src/db/index.ts';
import { createEnvelope, type Envelope, type Publisher } from '../../src/messaging/index.ts';
import { addToOutbox, OutboxRelay, outboxMigrations, outboxStatus } from '../../src/outbox/index.ts';
import { createTestDb, testDbBackend, type TestDb } from '../../src/testing/db.ts';
import { until } from '../until.ts';

const pgPass = testDbBackend() === 'pg';
const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

class RecordingPublisher implements Publisher {
  readonly received: Envelope[] = [];
  async publish(_destination: string, messages: readonly Envelope[]): Promise<void> {
    this.received.push(...messages);
  }
}

describe.skipIf(!pgPass)('OutboxRelay when the server ends its connections (KEEL_DB=pg pass only)', () => {
  it('goes on with new connections: nothing lost, each key in order, nothing parked', async () => {
    const writer: TestDb = await createTestDb({ schemaPrefix: 'relay_cut' });
    cleanups.push(() => writer.close());
    await migrate(writer, outboxMigrations);
    // The relay's own connections, named, so the test can end exactly those.
    const applicationName = `keel-relay-cut-${process.pid}`;
    const relayDb: Db = await openPgDb({ url, schema: writer.schema, poolSize: 2, applicationName });
    cleanups.push(() => relayDb.close());
    const publisher = new RecordingPublisher();
    const relay = new OutboxRelay(relayDb, publisher, {
      batchSize: 7,
      pollIntervalMs: 20,
      claimMs: 500,
      retryDelay: () => 20,
    });
    const errors: string[] = [];
    relay.events.on('error', ({ during }) => errors.push(during));
    await relay.start();
    cleanups.push(() => relay.stop());

    const written: Envelope[] = [];
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; i < 100; i++) {
        const message = createEnvelope({ type: 'test.cut.v1', key: `key-${w}`, payload: { n: i } });
        await writer.transaction((tx) => addToOutbox(tx, 'orders', message));
        written.push(message);
      }
    });
    const ended: number[] = [];
    for (let cut = 1; cut <= 3; cut++) {
      await until(() => publisher.received.length >= 50 * cut);
      const { rows } = await writer.query<{ ended: number }>(
        `SELECT count(*)::int AS ended FROM
           (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1 || '%') AS t`,
        [applicationName],
      );
      ended.push(rows[0]!.ended);
    }
    await Promise.all(writers);
    await until(() => written.every((m) => publisher.received.some((r) => r.id === m.id)), 30_000);
    await until(async () => (await outboxStatus(writer)).backlog === 0, 30_000);

    // Each cut ended the relay's pool connections and its LISTEN connection.
    expect(ended.every((count) => count >= 1)).toBe(true);
    expect(new Set(publisher.received.map((m) => m.id))).toEqual(new Set(written.map((m) => m.id)));
    for (let w = 0; w < 4; w++) {
      const firsts: number[] = [];
      const seen = new Set<string>();
      for (const m of publisher.received) {
        if (m.key !== `key-${w}` || seen.has(m.id)) continue;
        seen.add(m.id);
        firsts.push((m.payload as { n: number }).n);
      }
      expect(firsts, `key-${w}`).toEqual(Array.from({ length: 100 }, (_, i) => i));
    }
    expect((await outboxStatus(writer)).parked).toBe(0);
  }, 60_000);
});
