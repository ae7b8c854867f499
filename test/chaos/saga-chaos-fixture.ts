// The saga the chaos test kills runners of, shared by the test and its child runner.
// Three steps, each an external effect applied once per idempotency key by a "service" that
// logs every effect it applies in a table without a unique constraint, so a double would show.
import type { Db, Queryable } from '../../src/db/index.ts';
import { defineSaga, sagaMigrations, type SagaStepContext } from '../../src/saga/index.ts';

export const chaosMigrations = [
  ...sagaMigrations,
  {
    id: 'chaos_effects',
    sql: `
CREATE TABLE chaos_effect_keys (key text PRIMARY KEY);
-- No unique constraint: every applied effect is a row, so an effect applied twice is two rows.
CREATE TABLE chaos_effect_log (key text NOT NULL, owner text NOT NULL);
-- Every call, applied or deduplicated: shows that a killed runner's step really ran again.
CREATE TABLE chaos_effect_calls (key text NOT NULL);
`,
  },
];

/** The external service: applies an effect once per idempotency key. */
export async function applyEffect(db: Db, key: string, owner: string): Promise<void> {
  await db.transaction(async (tx: Queryable) => {
    await tx.query('INSERT INTO chaos_effect_calls (key) VALUES ($1)', [key]);
    const { rows } = await tx.query(
      'INSERT INTO chaos_effect_keys (key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING key',
      [key],
    );
    if (rows.length > 0)
      await tx.query('INSERT INTO chaos_effect_log (key, owner) VALUES ($1, $2)', [key, owner]);
  });
}

/** Called at every kill point; the child kills itself at the first one no earlier runner died at. */
export type Boundary = (id: string) => void;

export const chaosSteps = ['reserve', 'charge', 'ship'] as const;

/** `input.failAt`: the step whose action fails for good (before its effect), or none. */
export function chaosSaga(db: Db, owner: string, boundary: Boundary) {
  const effect = async (context: SagaStepContext<{ failAt: string | null }>): Promise<string> => {
    const at = `${context.instanceId}:${context.step}:${context.phase}`;
    boundary(`${at}:before-effect`);
    if (context.phase === 'action' && context.input.failAt === context.step) {
      throw new Error(`${context.step} refused`);
    }
    await applyEffect(db, context.idempotencyKey, owner);
    boundary(`${at}:after-effect`);
    return context.idempotencyKey;
  };
  return defineSaga<{ failAt: string | null }>({
    name: 'chaos',
    version: 1,
    steps: chaosSteps.map((name) => ({
      name,
      retry: { maxAttempts: 1 },
      action: effect,
      compensation: effect,
    })),
  });
}
