import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KeelError } from '../errors/index.ts';

/**
 * PGlite does not lock its data directory: a second PGlite on the same directory, in this process
 * or another, opens without complaint and the two silently overwrite each other's writes. keel
 * takes this lock before opening, and refuses a directory another live instance holds.
 *
 * The lock is a file `keel.lock` in the directory holding the owner's pid. A lock left by a process
 * that died (SIGKILL, a crash) is stale and taken over, so a restart after a crash just works.
 */
export interface DataDirLock {
  readonly file: string;
  release(): Promise<void>;
}

const heldHere = new Set<string>();
const takeoverExpiryMs = 10_000;

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const dir = path.resolve(dataDir);
  const file = path.join(dir, 'keel.lock');
  if (heldHere.has(dir)) throw inUse(dir, file, process.pid);
  await mkdir(dir, { recursive: true });
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  heldHere.add(dir);
  try {
    await acquire(file, token, dir);
  } catch (error) {
    heldHere.delete(dir);
    throw error;
  }
  let released = false;
  return {
    file,
    release: async () => {
      if (released) return;
      released = true;
      heldHere.delete(dir);
      // Only remove the file if it is still ours.
      const current = await readFile(file, 'utf8').catch(() => undefined);
      if (current === token) await rm(file, { force: true });
    },
  };
}

async function acquire(file: string, token: string, dir: string): Promise<void> {
  try {
    await writeFile(file, token, { flag: 'wx' });
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const owner = parsePid(await readFile(file, 'utf8').catch(() => ''));
  if (owner !== undefined && owner !== process.pid && isAlive(owner)) throw inUse(dir, file, owner);
  // Stale: its owner died (or is this process, which does not hold it: a previous life with the
  // same pid, as in a restarted container). Take it over under a takeover directory, so two
  // processes that both found it stale do not both win.
  const takeover = `${file}.takeover`;
  try {
    await mkdir(takeover);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const age = Date.now() - (await stat(takeover).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age < takeoverExpiryMs) throw inUse(dir, file, owner);
    // A takeover abandoned by a process that died mid-way.
    await rmdir(takeover).catch(() => undefined);
    return acquire(file, token, dir);
  }
  try {
    const partial = `${file}.${process.pid}.partial`;
    await writeFile(partial, token);
    await rename(partial, file);
  } finally {
    await rmdir(takeover).catch(() => undefined);
  }
}

function parsePid(content: string): number | undefined {
  const pid = Number(content.split(' ')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function inUse(dir: string, file: string, owner: number | undefined): KeelError {
  const who = owner === process.pid ? 'another PgliteDb in this process' : `process ${owner ?? '(unknown)'}`;
  return new KeelError(
    'KEEL_DB_UNAVAILABLE',
    `PGlite data directory ${dir} is in use by ${who}. Two PGlite instances on one directory lose writes; stop the other one first, or delete ${file} if no process uses the directory`,
    { details: { dataDir: dir, lockFile: file, owner } },
  );
}
