// The chaos tests run their processes against one PostgreSQL server: a file-backed PGlite opens in
// one process only. This says where that server is and why a run must skip without it.
import { defaultDatabaseUrl } from '../../src/db/index.ts';
import { createTestDb, testDbBackend } from '../../src/testing/index.ts';

/** The server the chaos tests' child processes share. */
export const sharedServerUrl = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;

/**
 * Why a chaos test cannot run here, or undefined when it can. Only KEEL_DB=pglite with no server
 * answering is a reason: under CI=true or KEEL_DB=pg a missing server must fail the test by name.
 */
export async function sharedServerMissing(): Promise<string | undefined> {
  if (process.env.CI === 'true' || testDbBackend() === 'pg') return undefined;
  try {
    const probe = await createTestDb({ backend: 'pg' });
    await probe.close();
    return undefined;
  } catch (error) {
    return `KEEL_DB=pglite and no PostgreSQL at ${new URL(sharedServerUrl).host} (${String(error)}): the chaos test needs a server its processes share`;
  }
}
