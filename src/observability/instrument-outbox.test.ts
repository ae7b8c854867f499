import type { Meter } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import type { Queryable } from '../db/db.ts';
import { migrate } from '../db/index.ts';
import { createEnvelope } from '../messaging/envelope.ts';
import { addToOutbox, outboxMigrations } from '../outbox/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { instrumentOutbox } from './instrument-outbox.ts';

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/** A meter that keeps the batch callback, so a test runs one collection (a scrape) itself. */
function capturingMeter(): { meter: Meter; collect: () => Promise<Map<string, number>> } {
  let callback: ((result: { observe: (gauge: unknown, value: number) => void }) => Promise<void>) | undefined;
  const meter = {
    createObservableGauge: (name: string) => ({ name }),
    addBatchObservableCallback: (cb: typeof callback) => (callback = cb),
    removeBatchObservableCallback: () => (callback = undefined),
  } as unknown as Meter;
  const collect = async (): Promise<Map<string, number>> => {
    const observed = new Map<string, number>();
    await callback?.({ observe: (gauge, value) => observed.set((gauge as { name: string }).name, value) });
    return observed;
  };
  return { meter, collect };
}

describe('instrumentOutbox', () => {
  it('reads keel_outbox alone at each scrape, never the archive of published rows', async () => {
    const db = await createTestDb({ schemaPrefix: 'instob' });
    dbs.push(db);
    await migrate(db, outboxMigrations);
    const clock = new ManualClock();
    await db.transaction((tx) =>
      addToOutbox(
        tx,
        'things',
        [1, 2, 3].map((n) => createEnvelope({ type: 't.v1', payload: { n } })),
      ),
    );
    await db.query(`UPDATE keel_outbox SET parked_at = now() WHERE seq = (SELECT min(seq) FROM keel_outbox)`);
    await db.query(`INSERT INTO keel_outbox_archive
      SELECT seq + 100, gen_random_uuid(), destination, type, key, payload, headers, occurred_at, hlc,
             created_at, attempts, last_error, now() FROM keel_outbox`);
    const statements: string[] = [];
    const recording: Queryable = {
      query: (sql, params) => {
        statements.push(sql);
        return db.query(sql, params);
      },
    };
    const { meter, collect } = capturingMeter();
    instrumentOutbox(recording, meter, { clock });
    const observed = await collect();
    expect([observed.get('keel.outbox.backlog'), observed.get('keel.outbox.parked')]).toEqual([2, 1]);
    expect(statements.length).toBe(1);
    // The plan of what a scrape ran touches no archive relation (a scan of it was the defect).
    for (const sql of statements) {
      const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`);
      const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(plan).toContain('keel_outbox');
      expect(plan).not.toContain('keel_outbox_archive');
    }
    // And with no archive at all, the gauges still report.
    await db.query(`ALTER TABLE keel_outbox_archive RENAME TO keel_outbox_archive_away`);
    expect((await collect()).get('keel.outbox.backlog')).toBe(2);
  });
});
