import { describe, expect, it } from 'vitest';
import { isKeelError } from '../errors/index.ts';
import { defineSaga } from './definition.ts';

const action = async (): Promise<void> => undefined;

describe('defineSaga', () => {
  it('refuses retry options the runner could not build, naming the step and the option', () => {
    // Before, these passed and every instance failed at the step at run time (compensated, or
    // parked for a compensation's retry), with the option named only in the stored failure.
    const bad = [
      [{ retry: { maxAttempts: 0 } }, /^saga.steps.0.retry.maxAttempts: expected an integer >= 1/],
      [{ retry: { backoff: 5 as never } }, /^saga.steps.0.retry.backoff: expected a Backoff/],
      [
        { compensation: action, compensationRetry: { handle: 'all' as never } },
        /^saga.steps.0.compensationRetry.handle: expected/,
      ],
    ] as const;
    for (const [options, message] of bad) {
      let error: unknown;
      try {
        defineSaga({ name: 'x', version: 1, steps: [{ name: 'a', action, ...options }] });
      } catch (e) {
        error = e;
      }
      expect(isKeelError(error, 'KEEL_INVALID_ARGUMENT')).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
    // Good options still pass.
    expect(
      defineSaga({ name: 'x', version: 1, steps: [{ name: 'a', action, retry: { maxAttempts: Infinity } }] })
        .steps,
    ).toHaveLength(1);
  });
});
