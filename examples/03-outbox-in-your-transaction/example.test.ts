import { PGlite } from '@electric-sql/pglite';
import { expect, it } from 'vitest';
import { defaultDatabaseUrl } from 'keel/db';
import { createTestDb, pgliteTemplate, testDbBackend } from 'keel/testing';
import { runExample, type Target } from './main.ts';

it('examples/03-outbox-in-your-transaction: pg (or PGlite) and Kysely transactions carry the outbox row', async () => {
  const lines: string[] = [];
  // On pg the example runs in a schema of its own, which the test database owns and drops.
  const db = testDbBackend() === 'pg' ? await createTestDb() : undefined;
  // On PGlite, from the test harness's initdb template: a fresh initdb costs seconds.
  const pglite = db === undefined ? new PGlite({ loadDataDir: await pgliteTemplate() }) : undefined;
  const target: Target =
    db === undefined
      ? { kind: 'pglite', ...(pglite === undefined ? {} : { pglite }) }
      : { kind: 'pg', url: process.env.DATABASE_URL ?? defaultDatabaseUrl, schema: db.schema };
  try {
    await runExample({ log: (line) => lines.push(line), target });
  } finally {
    await db?.close();
    await pglite?.close();
  }
  expect(lines).toEqual([
    `${target.kind}: order o-1 and its event committed in one transaction`,
    'kysely: order o-2 and its event committed in one transaction',
    'kysely: o-3 rolled back (payment declined), no event',
    'published to orders: order.placed.v1 {"id":"o-1","cents":1200}',
    'published to orders: order.placed.v1 {"id":"o-2","cents":350}',
    'relay published 2 events',
  ]);
});
