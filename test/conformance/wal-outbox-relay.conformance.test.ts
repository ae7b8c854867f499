// The WAL outbox (`addToWalOutbox` + `WalOutboxRelay`) passes the outbox relay suite on a
// PostgreSQL server of the file's own with wal_level=logical; each test has a schema (where
// parked messages land), a replication slot, a publication and a prefix of its own. The relay
// orders every message by commit, and moves on past a parked message (docs/outbox.md, "The WAL
// outbox").
import { afterAll, beforeAll } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import {
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  outboxMigrations,
  WalOutboxRelay,
} from '../../src/outbox/index.ts';
import { createTestDb, startPgServer, type PgServer } from '../../src/testing/index.ts';
import { describeOutboxRelayConformance } from './outbox-relay-conformance.ts';

let server: PgServer | undefined;
let slots = 0;

beforeAll(async () => {
  server = await startPgServer({ walLevel: 'logical' });
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

describeOutboxRelayConformance('WAL outbox on PostgreSQL (wal_level=logical)', {
  ordering: 'total',
  keyAfterParking: 'flow',
  open: async () => {
    const url = server!.url;
    const db = await createTestDb({
      backend: 'pg',
      env: { ...process.env, DATABASE_URL: url },
      schemaPrefix: 'walconf',
    });
    await migrate(db, outboxMigrations);
    slots++;
    const names = {
      slotName: `conf_${slots}`,
      publicationName: `conf_${slots}`,
      prefix: `keel_conf_${slots}`,
    };
    // Before the first add: a message written while no slot exists is never decoded.
    await ensureWalOutboxSlot(db, names);
    return {
      db,
      add: (tx, destination, messages) => addToWalOutbox(tx, destination, messages, { prefix: names.prefix }),
      relay: (publisher, options) =>
        new WalOutboxRelay(db, publisher, { connectionString: url, reconnectMs: 50, ...names, ...options }),
      cleanup: async () => {
        await dropWalOutboxSlot(db, names);
        await db.close();
      },
    };
  },
});
