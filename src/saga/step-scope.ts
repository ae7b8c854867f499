import type { SagaStepEvent } from './events.ts';

/**
 * Runs around each try of a step's action or compensation in this runner (all its retries):
 * `run` is the step, and its promise is the scope's to return. Observability uses it to make the
 * step's span the active one, so what the step does (an outbox write, an HTTP call) is traced as
 * its child; keel/saga itself knows nothing of OpenTelemetry.
 */
export type StepScope = <T>(event: SagaStepEvent, run: () => Promise<T>) => Promise<T>;

/** Runs `run` inside every scope, the first registered outermost. */
export function inScopes<T>(
  scopes: readonly StepScope[],
  event: SagaStepEvent,
  run: () => Promise<T>,
): Promise<T> {
  let next = run;
  for (let i = scopes.length - 1; i >= 0; i--) {
    const scope = scopes[i]!;
    const inner = next;
    next = () => scope(event, inner);
  }
  return next();
}
