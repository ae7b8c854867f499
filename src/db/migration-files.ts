import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';

/** One migration: applied once, in order, in its own transaction. */
export interface Migration {
  /** Unique and stable: the file name without `.sql` (`0001_create_orders`). Recorded once applied. */
  id: string;
  /** One or more statements. No BEGIN/COMMIT, no `CREATE INDEX CONCURRENTLY`: the runner wraps it in a transaction. */
  sql: string;
  /** Where it came from, named in errors; the file path for migrations read from a directory. */
  source?: string;
}

const fileName = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/;

/**
 * Reads `NNNN_name.sql` files from `dir`, ordered by their number. Other files are ignored, but a
 * `.sql` file that does not follow the pattern, or two files with the same number, is an error:
 * a migration that is silently skipped is worse than one that stops the start.
 */
export async function loadMigrations(dir: string): Promise<Migration[]> {
  if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('dir', 'a directory path', dir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (cause) {
    throw new KeelError('KEEL_INVALID_ARGUMENT', `dir: cannot read the migrations directory ${dir}`, {
      cause,
      details: { field: 'dir' },
    });
  }
  const found: { number: bigint; id: string; file: string }[] = [];
  for (const name of names) {
    if (!name.endsWith('.sql')) continue;
    const match = fileName.exec(name);
    if (match === null) {
      throw new KeelError(
        'KEEL_INVALID_ARGUMENT',
        `dir: migration file ${path.join(dir, name)} does not match NNNN_name.sql (digits, _, then letters, digits, _ or -)`,
        { details: { field: 'dir', file: name } },
      );
    }
    found.push({
      number: BigInt(match[1] ?? '0'),
      id: name.slice(0, -'.sql'.length),
      file: path.join(dir, name),
    });
  }
  found.sort((a, b) => (a.number < b.number ? -1 : a.number > b.number ? 1 : 0));
  for (let i = 1; i < found.length; i++) {
    const [previous, current] = [found[i - 1], found[i]];
    if (previous !== undefined && current !== undefined && previous.number === current.number) {
      throw new KeelError(
        'KEEL_INVALID_ARGUMENT',
        `dir: migrations ${previous.file} and ${current.file} share the number ${current.number}`,
        { details: { field: 'dir' } },
      );
    }
  }
  return Promise.all(
    found.map(async ({ id, file }) => ({ id, sql: await readFile(file, 'utf8'), source: file })),
  );
}

/** sha256 of the SQL, hex. Line endings are normalised, so a checkout with CRLF is not a changed migration. */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n')).digest('hex');
}
