// The WAL outbox (`addToWalOutbox` + `WalOutboxRelay`) passes the outbox relay suite on a
// PostgreSQL server of the file's own with wal_level=logical; each test has a schema (where
// parked messages land), a replication slot, a publication and a prefix of its own. The relay
// orders every message by commit, and holds later messages of a parked message's key behind it in the
// table outbox (docs/outbox.md, "The WAL outbox").
import { migrate } from '../../src/db/index.ts';
import { addToWalOutbox, outboxMigrations } from '../../src/outbox/index.ts';
import { createTestDb, describeOutboxRelayConformance } from '../../src/testing/index.ts';
import { walOutboxTestServer } from '../integration/wal-outbox-kit.ts';

const wal = walOutboxTestServer();

describeOutboxRelayConformance('WAL outbox on PostgreSQL (wal_level=logical)', {
  ordering: 'total',
  keyAfterParking: 'held',
  open: async () => {
    const db = await createTestDb({
      backend: 'pg',
      env: { ...process.env, DATABASE_URL: wal.url },
      schemaPrefix: 'walconf',
    });
    await migrate(db, outboxMigrations);
    // Before the first add: a message written while no slot exists is never decoded.
    const slot = await wal.newSlot(db);
    return {
      db,
      add: (tx, destination, messages) => addToWalOutbox(tx, destination, messages, { prefix: slot.prefix }),
      relay: (publisher, options) => slot.relay(publisher, options),
      cleanup: async () => {
        await slot.drop();
        await db.close();
      },
    };
  },
});
