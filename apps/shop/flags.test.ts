import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { flagMigrations } from '../../src/flags/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../../src/testing/index.ts';
import { ManualClock } from '../../src/time/index.ts';
import { ShopFlags } from './flags.ts';
import { databaseUnreachable, DbFault } from './test/db-fault.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/** Resolves once `ready()` holds, checking at every turn of the event loop (no timer). */
async function turnsUntil(ready: () => boolean): Promise<void> {
  while (!ready()) await new Promise((resolve) => setImmediate(resolve));
}

describe('ShopFlags.health()', () => {
  it('is failing while the flags cannot be refreshed, and ok again once they are', async () => {
    const db = await createTestDb();
    dbs.push(db);
    await migrate(db, flagMigrations);
    const clock = new ManualClock();
    const fault = new DbFault();
    const flags = new ShopFlags(fault.wrap(db), { clock, logger: pino({ level: 'silent' }) });
    expect(flags.health()).toEqual({ status: 'not-running', state: 'idle' });
    await flags.start();
    expect(flags.health()).toMatchObject({ status: 'ok' });

    await fault.during(databaseUnreachable(), async () => {
      // The provider's poll (every 30 s) fails: the last values read are still served.
      await advanceUntil(
        clock,
        turnsUntil(() => flags.health().status === 'failing'),
        { stepMs: 5000 },
      );
    });
    expect(flags.health()).toMatchObject({
      status: 'failing',
      dependency: 'database',
      during: 'flag refresh',
      failures: 1,
    });
    expect(flags.ordersAccepting).toBe(true);

    await advanceUntil(
      clock,
      turnsUntil(() => flags.health().status === 'ok'),
      { stepMs: 5000 },
    );
    // Each poll that answers is contact, not only the turn back from stale.
    const recovered = flags.health();
    const recoveredAt = recovered.status === 'ok' ? recovered.lastContactAt : undefined;
    expect(recoveredAt).toBeTypeOf('number');
    await advanceUntil(
      clock,
      turnsUntil(() => {
        const health = flags.health();
        return health.status === 'ok' && health.lastContactAt! > recoveredAt!;
      }),
      { stepMs: 5000 },
    );
    await flags.stop();
    expect(flags.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });
});
