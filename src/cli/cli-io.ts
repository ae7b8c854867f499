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
    io.err(describeFailure(error, db.schema));
    return 1;
  } finally {
    await db.close();
  }
}

/** SQLSTATE undefined_table. */
const undefinedTable = '42P01';

/**
 * What the operator reads when a command fails. A missing table is most often the wrong database
 * or one the service never migrated, so the line says which schema was asked and where it came from.
 */
function describeFailure(error: unknown, schema: string): string {
  if (error instanceof KeelError) return `${error.code}: ${error.message}`;
  if ((error as { code?: unknown } | null)?.code === undefinedTable) {
    return (
      `${(error as Error).message} in schema ${schema}: is this the service's database (KEEL_DB, ` +
      'DATABASE_URL, KEEL_DATA_DIR), and has the service started once, to run its migrations?'
    );
  }
  return String(error);
}
