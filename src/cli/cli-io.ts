import { dbConfigFromEnv, openDb, type Db } from '../db/index.ts';
import { KeelError } from '../errors/index.ts';

/** What a `keel` command talks to: its output, its environment, and how it opens the database. */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** Opens the database; default from the environment (`KEEL_DB`, `DATABASE_URL`, `KEEL_DATA_DIR`). */
  openDb?: () => Promise<Db>;
}

/**
 * Runs a command against the database and closes it after. A keel error is printed with its
 * code and exits 1: the operator reads what was wrong, not a stack trace.
 */
export async function withCliDb(io: CliIo, command: (db: Db) => Promise<number>): Promise<number> {
  const db = await (io.openDb ?? (() => openDb(dbConfigFromEnv(io.env))))();
  try {
    return await command(db);
  } catch (error) {
    io.err(error instanceof KeelError ? `${error.code}: ${error.message}` : String(error));
    return 1;
  } finally {
    await db.close();
  }
}
