// CI's PGlite pass leaves out the files of test/setup/pinned-database-tests.ts, on the ground that
// they open no database through KEEL_DB and so run the same in the PostgreSQL pass. This keeps
// that ground true: a listed file that came to open one through KEEL_DB would be tested on
// PostgreSQL only, without anyone noticing.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { pinnedDatabaseTests } from '../setup/pinned-database-tests.ts';

/** What opens a database as KEEL_DB says: the test helpers that follow it, and the switch itself. */
const followsKeelDb = [/\btestDbBackend\(/, /\bdbConfigFromEnv\(/, /\bcreateShopStore\(/, /\bopenTestShop\(/];

describe('the files CI runs in its PostgreSQL pass only', () => {
  it.each(pinnedDatabaseTests)('%s opens no database through KEEL_DB', async (file) => {
    const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
    for (const pattern of followsKeelDb) expect(text, `${file} calls ${pattern.source}`).not.toMatch(pattern);
    // createTestDb follows KEEL_DB unless told the backend.
    const calls = text.match(/\bcreateTestDb\(/g)?.length ?? 0;
    const pinned = text.match(/\bcreateTestDb\(\{\s*backend: 'pg'/g)?.length ?? 0;
    expect(pinned, `${file}: every createTestDb names backend 'pg'`).toBe(calls);
  });
});
