import { migrate } from '../../src/db/index.ts';
import { PgQueue, pgQueueMigrations } from '../../src/messaging/index.ts';
import {
  createTestDb,
  describeBrokerConformance,
  testDbBackend,
  type TestDb,
} from '../../src/testing/index.ts';

/** The queue over a test database of its own, which closing the broker drops. */
class TestPgQueue extends PgQueue {
  constructor(readonly testDb: TestDb) {
    super(testDb);
  }
  override async close(): Promise<void> {
    await this.testDb.close();
  }
}

describeBrokerConformance({
  name: `postgres queue on ${testDbBackend()}`,
  open: async () => {
    const db = await createTestDb();
    await migrate(db, pgQueueMigrations);
    return new TestPgQueue(db);
  },
});
