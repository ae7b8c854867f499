// Chaos: a saga runner process is SIGKILLed at every step boundary in turn (before an effect,
// after an effect and before its progress commit, after the last commit before the end), each
// time in a fresh child;
// the next child takes the instance over once the dead one's lease expires. Every instance must
// end COMPLETED or COMPENSATED, and every external effect must be applied exactly once.
//
// Needs a PostgreSQL server (two processes share the database; a file-backed PGlite opens in one
// process only). Skipped, with the reason, only when KEEL_DB is pglite and no server answers;
// under CI=true or KEEL_DB=pg a missing server fails the test.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { getSaga, startSaga } from '../../src/saga/index.ts';
import { createTestDb, type TestDb } from '../../src/testing/index.ts';
import { chaosMigrations, chaosSaga, chaosSteps } from './saga-chaos-fixture.ts';
import { sharedServerMissing, sharedServerUrl } from './shared-server.ts';

const child = fileURLToPath(new URL('./saga-runner-child.ts', import.meta.url));

const skipReason = await sharedServerMissing();

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: Record<string, unknown>[];
}

interface Child {
  /** Lets the loaded child run, knowing where earlier runners died. */
  go(killed: readonly string[]): Promise<Exit>;
  /** Sends it away unused. */
  dismiss(): void;
}

/** Spawns a child that loads and waits: the next runner is ready while the current one runs. */
function spawnChild(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', child], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: proc.stdout }).on('line', (text) =>
    lines.push(JSON.parse(text) as Record<string, unknown>),
  );
  const exit = new Promise<Exit>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal, lines })),
  );
  return {
    go: (killed) => {
      proc.stdin.end(JSON.stringify(killed) + '\n');
      return exit;
    },
    dismiss: () => proc.stdin.end(),
  };
}

const dbs: TestDb[] = [];
afterAll(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

/** Runs children until one finishes without a new kill point; returns the kill points in order. */
async function killAtEveryBoundary(
  failAt: string | null,
): Promise<{ db: TestDb; id: string; killedAt: string[] }> {
  const db = await createTestDb({ backend: 'pg' });
  dbs.push(db);
  await migrate(db, chaosMigrations);
  const id = `chaos-${failAt ?? 'ok'}`;
  await startSaga(
    db,
    chaosSaga(db, 'test', () => undefined),
    { failAt },
    { id },
  );
  const killedAt: string[] = [];
  const env = { DATABASE_URL: sharedServerUrl, KEEL_CHAOS_SCHEMA: db.schema };
  // The next child loads while the current one runs: loading takes longer than most rounds.
  const ready = [spawnChild(env)];
  const dismiss = (): void => ready.splice(0).forEach((c) => c.dismiss());
  for (let round = 0; round < 30; round++) {
    const current = ready.shift()!;
    ready.push(spawnChild(env));
    const exit = await current.go(killedAt);
    const boundary = exit.lines.find((line) => line.event === 'boundary');
    if (boundary !== undefined) {
      expect(exit.signal, `round ${round}`).toBe('SIGKILL');
      killedAt.push(String(boundary.id));
      continue;
    }
    dismiss();
    expect(exit.lines.filter((line) => line.event === 'error')).toEqual([]);
    expect({ code: exit.code, last: exit.lines.at(-1) }).toEqual({ code: 0, last: { event: 'done' } });
    return { db, id, killedAt };
  }
  dismiss();
  throw new Error(`still not done after 30 runners; killed at ${killedAt.join(', ')}`);
}

const points = (id: string, step: string, phase: string): string[] =>
  ['before-effect', 'after-effect'].map((p) => `${id}:${step}:${phase}:${p}`);

async function effects(db: TestDb): Promise<{ applied: Record<string, number>; calls: number }> {
  const { rows } = await db.query<{ key: string; n: number }>(
    'SELECT key, count(*)::int AS n FROM chaos_effect_log GROUP BY key',
  );
  const calls = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM chaos_effect_calls');
  return { applied: Object.fromEntries(rows.map((r) => [r.key, r.n])), calls: calls.rows[0]!.n };
}

describe.skipIf(skipReason !== undefined)(
  `chaos: saga runners killed at every step boundary${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    it('every instance ends COMPLETED or COMPENSATED and each effect is applied exactly once', async () => {
      const [ok, failed] = await Promise.all([killAtEveryBoundary(null), killAtEveryBoundary('ship')]);

      // Every kill point of the run, each in turn.
      expect(ok.killedAt).toEqual([
        ...chaosSteps.flatMap((step) => points(ok.id, step, 'action')),
        `${ok.id}:ship:action:committed`,
      ]);
      expect(failed.killedAt).toEqual([
        ...points(failed.id, 'reserve', 'action'),
        ...points(failed.id, 'charge', 'action'),
        `${failed.id}:ship:action:before-effect`,
        ...points(failed.id, 'charge', 'compensation'),
        ...points(failed.id, 'reserve', 'compensation'),
        `${failed.id}:reserve:compensation:committed`,
      ]);

      const done = await getSaga(ok.db, ok.id);
      expect(done.instance.state).toBe('COMPLETED');
      const undone = await getSaga(failed.db, failed.id);
      expect(undone.instance.state).toBe('COMPENSATED');
      expect(undone.instance.failure).toMatchObject({ message: 'ship refused', step: 'ship' });
      // Each kill before the end left the instance to the next runner, through an expired lease (the
      // last kill point of 'ok' comes after the write that completed it: nothing is left to take over).
      expect(done.history.filter((h) => h.event === 'lease-taken-over').length).toBeGreaterThanOrEqual(6);

      const okEffects = await effects(ok.db);
      expect(okEffects.applied).toEqual(
        Object.fromEntries(chaosSteps.map((step) => [`${ok.id}:${step}:action`, 1])),
      );
      const failedEffects = await effects(failed.db);
      expect(failedEffects.applied).toEqual({
        [`${failed.id}:reserve:action`]: 1,
        [`${failed.id}:charge:action`]: 1,
        [`${failed.id}:charge:compensation`]: 1,
        [`${failed.id}:reserve:compensation`]: 1,
      });
      // Runners killed after an effect made the next runner call it again: the key kept it single.
      expect(okEffects.calls).toBeGreaterThan(3);
      expect(failedEffects.calls).toBeGreaterThan(4);
    }, 120_000);
  },
);
