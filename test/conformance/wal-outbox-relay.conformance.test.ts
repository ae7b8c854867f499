// The WAL outbox (`addToWalOutbox` + `WalOutboxRelay`) passes the outbox relay suite on a
// PostgreSQL server of the file's own with wal_level=logical; each test has a schema (where
// parked messages land), a replication slot, a publication and a prefix of its own. The relay
// orders every message by commit, and holds later messages of a parked message's key behind it in the
// table outbox (docs/outbox.md, "The WAL outbox").
import { afterAll, beforeAll } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { addToWalOutbox, outboxMigrations, WalOutboxRelay } from '../../src/outbox/index.ts';
import {
  createTestDb,
  describeOutboxRelayConformance,
  startWalOutboxTestServer,
  type WalOutboxTestServer,
} from '../../src/testing/index.ts';

let wal: WalOutboxTestServer | undefined;

beforeAll(async () => {
  wal = await startWalOutboxTestServer();
}, 60_000);

afterAll(async () => {
  await wal?.stop();
});

describeOutboxRelayConformance('WAL outbox on PostgreSQL (wal_level=logical)', {
  ordering: 'total',
  keyAfterParking: 'held',
  open: async () => {
    const url = wal!.url;
    const db = await createTestDb({
      backend: 'pg',
      env: { ...process.env, DATABASE_URL: url },
      schemaPrefix: 'walconf',
    });
    await migrate(db, outboxMigrations);
    // Before the first add: a message written while no slot exists is never decoded.
    const { drop, ...names } = await wal!.newSlot(db);
    return {
      db,
      add: (tx, destination, messages) => addToWalOutbox(tx, destination, messages, { prefix: names.prefix }),
      relay: (publisher, options) =>
        new WalOutboxRelay(db, publisher, { connectionString: url, reconnectMs: 50, ...names, ...options }),
      cleanup: async () => {
        await drop();
        await db.close();
      },
    };
  },
});
