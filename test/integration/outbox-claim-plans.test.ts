// The table relay's claim and mark are prepared statements planned on every execution: a plan
// kept from a claim on an empty outbox would scan the whole table once it fills.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultDatabaseUrl } from '../../src/db/open-db.ts';
import { migrate, openPgDb, type Db } from '../../src/db/index.ts';
import { claimBatch, markPublished } from '../../src/outbox/outbox-claims.ts';
import { outboxMigrations } from '../../src/outbox/index.ts';
import { createTestDb, testDbBackend } from '../../src/testing/db.ts';

const pgPass = testDbBackend() === 'pg';
const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe.skipIf(!pgPass)('the outbox claim and mark plans (KEEL_DB=pg pass only)', () => {
  it('are prepared once and planned for each batch, never by a generic plan made on an empty outbox', async () => {
    const writer = await createTestDb({ schemaPrefix: 'claim_plans' });
    cleanups.push(() => writer.close());
    await migrate(writer, outboxMigrations);
    // One connection: its session's prepared statements are the relay's.
    const relayDb: Db = await openPgDb({ url, schema: writer.schema, poolSize: 1 });
    cleanups.push(() => relayDb.close());
    const claim = (marks?: { seqs: string[]; claimIds: string[] }) =>
      claimBatch(relayDb, {
        owner: 'relay-1',
        id: randomUUID(),
        now: new Date(),
        until: new Date(Date.now() + 30_000),
        limit: 100,
        marks,
        deleteRows: false,
      });
    // Past the five custom plans after which PostgreSQL may settle on a generic one, all empty.
    for (let i = 0; i < 8; i++) expect((await claim()).rows).toEqual([]);
    await writer.query(
      `INSERT INTO keel_outbox (destination, id, type, key, payload, headers, occurred_at)
       SELECT 'orders', gen_random_uuid(), 'order.placed.v1', 'k' || g, '{}'::jsonb, '{}'::jsonb, now()
       FROM generate_series(1, 1000) AS g`,
    );
    let marks: { seqs: string[]; claimIds: string[] } | undefined;
    let published = 0;
    for (;;) {
      const batch = await claim(marks);
      if (batch.rows.length === 0) break;
      published += batch.rows.length;
      marks = { seqs: batch.rows.map((row) => row.seq), claimIds: [batch.id] };
    }
    await markPublished(relayDb, marks!, new Date(), false);
    expect(published).toBe(1000);
    expect(
      Number((await writer.query<{ n: string }>('SELECT count(*) AS n FROM keel_outbox')).rows[0]!.n),
    ).toBe(0);

    const { rows } = await relayDb.query<{ statement: string; generic_plans: string; custom_plans: string }>(
      `SELECT statement, generic_plans::text, custom_plans::text FROM pg_prepared_statements
       WHERE statement LIKE '%keel_outbox_claims%'`,
    );
    const plans = (marker: string) => rows.find((row) => row.statement.includes(marker));
    const claims = plans('INSERT INTO keel_outbox_claims');
    const markings = plans('INSERT INTO keel_outbox_archive');
    expect(claims).toMatchObject({ generic_plans: '0' });
    expect(Number(claims?.custom_plans)).toBeGreaterThanOrEqual(19);
    expect(markings).toMatchObject({ generic_plans: '0' });
    expect(Number(markings?.custom_plans)).toBeGreaterThanOrEqual(10);
  });
});
