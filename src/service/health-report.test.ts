import { describe, expect, it } from 'vitest';
import { KeelError } from '../errors/index.ts';
import { healthReport } from './health-report.ts';

describe('healthReport', () => {
  it('shows times as ISO strings and the last error by its code, never its message', () => {
    const at = Date.UTC(2026, 11, 7, 12, 0, 0);
    expect(healthReport({ status: 'ok', lastContactAt: at })).toEqual({
      status: 'ok',
      lastContactAt: '2026-12-07T12:00:00.000Z',
    });
    expect(healthReport({ status: 'ok', lastContactAt: undefined })).toEqual({ status: 'ok' });
    expect(healthReport({ status: 'not-running', state: 'stopping' })).toEqual({
      status: 'not-running',
      state: 'stopping',
    });
    const failing = (lastError: unknown) =>
      healthReport({
        status: 'failing',
        dependency: 'broker',
        during: 'publish',
        since: at,
        failures: 3,
        lastError,
        lastContactAt: undefined,
      });
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:5672'), { code: 'ECONNREFUSED' });
    expect(failing(refused)).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      since: '2026-12-07T12:00:00.000Z',
      failures: 3,
      error: 'ECONNREFUSED',
    });
    expect(JSON.stringify(failing(refused))).not.toContain('10.0.0.7');
    expect(failing(new KeelError('KEEL_BROKER_UNAVAILABLE', 'amqp://user@host down'))).toMatchObject({
      error: 'KEEL_BROKER_UNAVAILABLE',
    });
    // A code that is not a code (free text) is not shown: the class name is.
    expect(failing(Object.assign(new TypeError('x'), { code: 'user alice denied' }))).toMatchObject({
      error: 'TypeError',
    });
    expect(failing('down')).toMatchObject({ error: 'string' });
    expect(failing(undefined)).not.toHaveProperty('error');
  });
});
