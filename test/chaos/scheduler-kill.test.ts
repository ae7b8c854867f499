// Chaos: schedulers in child processes sharing one database, SIGKILLed at random (often inside a
// tick's transaction, between its write and its commit) and replaced, for several seconds of
// ticks every 100 ms. Every tick from the first fired to the last planned must be written exactly
// once: none twice (a kill after the write but before the commit rolls it back), none lost (the
// schedule catches every tick up, however long every scheduler was down).
//
// Needs a PostgreSQL server (processes share the database; a file-backed PGlite opens in one
// process only). Skipped, with the reason, only when KEEL_DB is pglite and no server answers;
// under CI=true or KEEL_DB=pg a missing server fails the test.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { readSchedules, scheduleMigrations } from '../../src/schedule/index.ts';
import { createTestDb, type TestDb } from '../../src/testing/index.ts';
import { until } from '../until.ts';
import { sharedServerMissing, sharedServerUrl } from './shared-server.ts';

const childScript = fileURLToPath(new URL('./scheduler-child.ts', import.meta.url));
const everyMs = 100;

const skipReason = await sharedServerMissing();

interface SchedulerChild {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  /** Resolves once it runs, or once it exited without. */
  started: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnScheduler(schema: string): SchedulerChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', childScript], {
    env: {
      ...process.env,
      DATABASE_URL: sharedServerUrl,
      KEEL_CHAOS_SCHEMA: schema,
      KEEL_CHAOS_EVERY_MS: String(everyMs),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  let onStarted!: () => void;
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  createInterface({ input: proc.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as Record<string, unknown>;
    lines.push(line);
    if (line.event === 'started') onStarted();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal })),
  );
  // A child killed while it still loads never starts: waiting for it ends with its exit.
  return { proc, lines, started: Promise.race([started, exited.then(() => undefined)]), exited };
}

const dbs: TestDb[] = [];
const children: SchedulerChild[] = [];
afterAll(async () => {
  for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  for (const db of dbs.splice(0)) await db.close();
});

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(skipReason !== undefined)(
  `chaos: schedulers SIGKILLed mid-tick${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    it('writes every tick exactly once: none twice, none lost', async () => {
      const db = await createTestDb({ backend: 'pg' });
      dbs.push(db);
      await migrate(db, [
        ...scheduleMigrations,
        // No unique key: a tick written twice shows as two rows instead of failing its second write.
        {
          id: 'chaos_ticks',
          sql: 'CREATE TABLE chaos_ticks (key text NOT NULL, at timestamptz NOT NULL, pid integer NOT NULL)',
        },
      ]);
      const live: SchedulerChild[] = [];
      const start = async (): Promise<void> => {
        const child = spawnScheduler(db.schema);
        children.push(child);
        live.push(child);
        await child.started;
      };
      await Promise.all([start(), start()]);
      let kills = 0;
      // Kill one of them every 150–450 ms, a replacement started beside the survivor; the
      // replacement's start (a second or more for tsx) leaves stretches with one scheduler, or none.
      const replacements: Promise<void>[] = [];
      const deadline = Date.now() + 8000;
      while (Date.now() < deadline) {
        await pause(150 + Math.random() * 300);
        const victim = live.splice(Math.floor(Math.random() * live.length), 1)[0];
        if (victim === undefined) continue;
        victim.proc.kill('SIGKILL');
        kills += 1;
        replacements.push(start());
        if (live.length === 0) await replacements.at(-1);
      }
      await Promise.all(replacements);
      // The survivors catch up whatever came due while none ran, then stop as a deploy would.
      const countWritten = async (): Promise<number> =>
        (await db.query<{ n: number }>('SELECT count(DISTINCT key)::int AS n FROM chaos_ticks')).rows[0]!.n;
      const dueBy = Date.now();
      await until(
        async () => ((await readSchedules(db, ['chaos.every']))[0]?.nextTick ?? 0) > dueBy,
        20_000,
        'schedulers caught up',
      );
      for (const child of live) child.proc.kill('SIGTERM');
      const exits = await Promise.all(live.map((child) => child.exited));
      expect(exits.map((exit) => exit.code)).toEqual(live.map(() => 0));
      expect(children.flatMap((child) => child.lines.filter((line) => line.event !== 'started'))).toEqual([]);

      const [final] = await readSchedules(db, ['chaos.every']);
      const { rows } = await db.query<{ key: string; at: Date; n: number }>(
        'SELECT key, min(at) AS at, count(*)::int AS n FROM chaos_ticks GROUP BY key ORDER BY min(at)',
      );
      expect(kills).toBeGreaterThanOrEqual(15);
      // None twice.
      expect(rows.filter((r) => r.n > 1)).toEqual([]);
      // None lost: every tick from the first to the one before the next planned, once each.
      const first = new Date(rows[0]!.at).getTime();
      const expected: string[] = [];
      for (let at = first; at < final!.nextTick; at += everyMs)
        expected.push(`chaos.every@${new Date(at).toISOString()}`);
      expect(rows.map((r) => r.key)).toEqual(expected);
      expect(final!.fired).toBe(expected.length);
      expect(await countWritten()).toBe(expected.length);
      console.log(
        `[scheduler-kill] ${expected.length} ticks, ${kills} schedulers SIGKILLed, ${children.length} started; none twice, none lost`,
      );
    }, 120_000);
  },
);
