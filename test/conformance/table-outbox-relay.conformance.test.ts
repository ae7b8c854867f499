// The table outbox (`addToOutbox` + `OutboxRelay`) passes the outbox relay suite, on the backend
// KEEL_DB chooses (PGlite by default, pg for a real server), each test in a schema of its own.
// The relay polls every 20 ms so it reacts fast; it orders per key, and a parked row holds the
// later rows of its key until an operator retries it (docs/outbox.md, "Per-key order").
import { migrate } from '../../src/db/index.ts';
import { addToOutbox, OutboxRelay, outboxMigrations } from '../../src/outbox/index.ts';
import { createTestDb, describeOutboxRelayConformance, testDbBackend } from '../../src/testing/index.ts';

describeOutboxRelayConformance(`table outbox on ${testDbBackend()}`, {
  ordering: 'per-key',
  keyAfterParking: 'held',
  open: async () => {
    const db = await createTestDb({ schemaPrefix: 'relayconf' });
    await migrate(db, outboxMigrations);
    return {
      db,
      add: addToOutbox,
      relay: (publisher, options) => new OutboxRelay(db, publisher, { pollIntervalMs: 20, ...options }),
      cleanup: () => db.close(),
    };
  },
});
