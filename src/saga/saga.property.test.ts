// Random failure schedules against a reference model of the saga: which actions and
// compensations ran (and how often), and the final state, must be what the model says.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSaga, type SagaStep } from './definition.ts';
import { SagaRunner } from './saga-runner.ts';
import { getSaga, retrySaga } from './saga-admin.ts';
import { startSaga, type SagaState } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';
import { propertyRuns } from '../testing/property-runs.ts';

const maxAttempts = 3;

/** Per step: how many calls of its action / compensation fail before one succeeds. */
interface StepPlan {
  actionFailures: number;
  compensationFailures: number;
  compensable: boolean;
  /** With `compensable`: its compensation also runs when its own action fails for good. */
  compensateOnFailure: boolean;
}

interface Plan {
  steps: StepPlan[];
  /** The operator retries a parked instance this many times. */
  operatorRetries: number;
}

interface Outcome {
  state: SagaState;
  /** Every call made, in order: `action:<i>` or `compensation:<i>`. */
  calls: string[];
}

/** The reference model: plain loops over the plan, no database, no runner. */
function model(plan: Plan): Outcome {
  const calls: string[] = [];
  const left = plan.steps.map((s) => ({ action: s.actionFailures, compensation: s.compensationFailures }));
  let failedAt = -1;
  for (const [i, counter] of left.entries()) {
    let ok = false;
    for (let attempt = 0; attempt < maxAttempts && !ok; attempt++) {
      calls.push(`action:${i}`);
      if (counter.action > 0) counter.action -= 1;
      else ok = true;
    }
    if (!ok) {
      failedAt = i;
      break;
    }
  }
  if (failedAt < 0) return { state: 'COMPLETED', calls };
  let retries = plan.operatorRetries;
  const first = plan.steps[failedAt]!.compensable && plan.steps[failedAt]!.compensateOnFailure;
  for (let j = first ? failedAt : failedAt - 1; j >= 0; j--) {
    if (!plan.steps[j]!.compensable) continue;
    for (;;) {
      let ok = false;
      for (let attempt = 0; attempt < maxAttempts && !ok; attempt++) {
        calls.push(`compensation:${j}`);
        if (left[j]!.compensation > 0) left[j]!.compensation -= 1;
        else ok = true;
      }
      if (ok) break;
      if (retries === 0) return { state: 'NEEDS_ATTENTION', calls };
      retries -= 1;
    }
  }
  return { state: 'COMPENSATED', calls };
}

const stepPlan: fc.Arbitrary<StepPlan> = fc.record({
  actionFailures: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 4 })),
  compensationFailures: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 7 })),
  compensable: fc.boolean(),
  compensateOnFailure: fc.boolean(),
});
const plans: fc.Arbitrary<Plan> = fc.record({
  steps: fc.array(stepPlan, { minLength: 1, maxLength: 5 }),
  operatorRetries: fc.integer({ min: 0, max: 2 }),
});

let db: TestDb;
beforeAll(async () => {
  db = await createTestDb();
  await migrate(db, sagaMigrations);
});
afterAll(async () => {
  await db.close();
});

let run = 0;
async function real(plan: Plan): Promise<Outcome> {
  run += 1;
  const calls: string[] = [];
  const left = plan.steps.map((s) => ({ action: s.actionFailures, compensation: s.compensationFailures }));
  const retry = { maxAttempts, backoff: constantBackoff(0) };
  const steps = plan.steps.map((s, i): SagaStep => {
    const step: SagaStep = {
      name: `s${i}`,
      retry,
      compensationRetry: retry,
      action: async () => {
        calls.push(`action:${i}`);
        if (left[i]!.action > 0) {
          left[i]!.action -= 1;
          throw new Error(`action ${i} failed`);
        }
        return i;
      },
    };
    if (s.compensable) {
      step.compensateOnFailure = s.compensateOnFailure;
      step.compensation = async () => {
        calls.push(`compensation:${i}`);
        if (left[i]!.compensation > 0) {
          left[i]!.compensation -= 1;
          throw new Error(`compensation ${i} failed`);
        }
      };
    }
    return step;
  });
  const saga = defineSaga({ name: `prop-${run}`, version: 1, steps });
  const clock = new ManualClock();
  const runner = new SagaRunner({ db, sagas: [saga], clock });
  const { id } = await startSaga(db, saga, { run }, { clock });
  await runner.runDue();
  for (let r = 0; r < plan.operatorRetries; r++) {
    if ((await getSaga(db, id)).instance.state !== 'NEEDS_ATTENTION') break;
    await retrySaga(db, id, { clock });
    await runner.runDue();
  }
  const { instance, history } = await getSaga(db, id);
  // Every instance ends in a final or parked state, with its history.
  expect(history.at(-1)).toMatchObject({ event: 'state', detail: { to: instance.state } });
  return { state: instance.state, calls };
}

describe('saga against its reference model', () => {
  it('runs the same actions and compensations, in the same order, and ends in the same state', async () => {
    await fc.assert(
      fc.asyncProperty(plans, async (plan) => {
        expect(await real(plan)).toEqual(model(plan));
      }),
      { numRuns: propertyRuns(30) },
    );
  });
});
