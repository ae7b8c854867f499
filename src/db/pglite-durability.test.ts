import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { createTempPgliteDir, testDbBackend, type TempPgliteDir } from '../testing/db.ts';

// These tests are about PGlite's files, so they run once, in the PGlite pass of the suite.
const pglitePass = testDbBackend() === 'pglite';
const child = fileURLToPath(new URL('./test-fixtures/pglite-commit-loop.ts', import.meta.url));

const dirs: TempPgliteDir[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => dir.remove()));
});
/** A data directory holding an empty database (from the harness's template: no initdb in the child). */
async function tempDir(): Promise<TempPgliteDir> {
  const dir = await createTempPgliteDir();
  dirs.push(dir);
  await (await dir.open()).close();
  return dir;
}

interface ChildRun {
  /** Ids whose commit resolved in the child before it died. */
  acknowledged: number[];
  signal: NodeJS.Signals | null;
}

/**
 * Runs the commit loop in a child process. It dies by SIGKILL: its own after `stopAfter` commits,
 * or the parent's after `killAfter` acknowledged commits (at whatever point the child then is).
 */
function runChild(
  dataDir: string,
  options: { stopAfter?: number; killAfter?: number; beforeKill?: (pid: number) => Promise<void> },
): Promise<ChildRun> {
  const args = ['--import', 'tsx', child, dataDir];
  if (options.stopAfter !== undefined) args.push(String(options.stopAfter));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const acknowledged: number[] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => {
    const match = /^committed (\d+)$/.exec(line);
    if (match === null) return;
    acknowledged.push(Number(match[1]));
    if (options.killAfter !== undefined && acknowledged.length === options.killAfter) {
      void (options.beforeKill?.(proc.pid ?? 0) ?? Promise.resolve()).finally(() => proc.kill('SIGKILL'));
    }
  });
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (_code, signal) => resolve({ acknowledged, signal }));
  });
}

describe.skipIf(!pglitePass)(
  'file-backed PGlite (runs in the KEEL_DB=pglite pass only: it tests PGlite files)',
  () => {
    it('keeps committed data across close and reopen', async () => {
      const dir = await tempDir();
      const db = await dir.open({ schema: 'app' });
      await db.query('CREATE TABLE kept (id int PRIMARY KEY, v text)');
      await db.transaction(async (tx) => {
        await tx.query("INSERT INTO kept VALUES (1, 'one')");
      });
      await db.query("INSERT INTO kept VALUES (2, 'two')");
      await db.close();

      const reopened = await dir.open({ schema: 'app' });
      expect((await reopened.query('SELECT id, v FROM kept ORDER BY id')).rows).toEqual([
        { id: 1, v: 'one' },
        { id: 2, v: 'two' },
      ]);
      await reopened.close();
    });

    it('keeps a commit when the process is killed with SIGKILL right after it', async () => {
      const dir = await tempDir();
      const run = await runChild(dir.path, { stopAfter: 3 });
      expect(run.signal).toBe('SIGKILL');
      expect(run.acknowledged).toEqual([1, 2, 3]);

      const db = await dir.open();
      expect((await db.query('SELECT id FROM crash_rows ORDER BY id')).rows).toEqual([
        { id: 1 },
        { id: 2 },
        { id: 3 },
      ]);
      await db.close();
    });

    it('keeps every acknowledged commit when killed at an arbitrary moment, twice over the same directory', async () => {
      const dir = await tempDir();
      let acknowledged: number[] = [];
      for (const killAfter of [25, 40]) {
        const run = await runChild(dir.path, { killAfter });
        expect(run.signal).toBe('SIGKILL');
        acknowledged = acknowledged.concat(run.acknowledged);
      }
      const db = await dir.open();
      const ids = (await db.query<{ id: number }>('SELECT id FROM crash_rows ORDER BY id')).rows.map(
        (r) => r.id,
      );
      const total = (await db.query<{ n: number }>('SELECT n FROM crash_total')).rows[0]?.n;
      await db.close();
      expect(total).toBe(ids.length);
      // Every acknowledged commit survived; beyond those, at most the commits in flight at each kill,
      // and the ids stay contiguous: no commit was half applied.
      for (const id of acknowledged) expect(ids).toContain(id);
      expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
      expect(ids.length - acknowledged.length).toBeLessThanOrEqual(2);
    });

    it('refuses a second open of a directory in use, in this process or by another, and takes over after a crash', async () => {
      const dir = await tempDir();
      const first = await dir.open();
      const second: unknown = await dir.open().catch((e: unknown) => e);
      expect(isKeelError(second, 'KEEL_DB_UNAVAILABLE')).toBe(true);
      expect((second as Error).message).toContain('in use by another PgliteDb in this process');
      await first.close();

      let refusal: unknown;
      const run = await runChild(dir.path, {
        killAfter: 3,
        beforeKill: async (pid) => {
          refusal = await dir.open().catch((e: unknown) => e);
          expect((refusal as Error).message).toContain(`in use by process ${pid}`);
        },
      });
      expect(isKeelError(refusal, 'KEEL_DB_UNAVAILABLE')).toBe(true);
      expect(run.signal).toBe('SIGKILL');
      // The dead child's lock is stale: opening takes it over.
      const reopened = await dir.open();
      const { rows } = await reopened.query<{ n: string }>('SELECT count(*) AS n FROM crash_rows');
      expect(Number(rows[0]?.n)).toBeGreaterThanOrEqual(3);
      await reopened.close();
    });
  },
);
