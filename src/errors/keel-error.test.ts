import { describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  KeelError,
  NotFoundError,
  ValidationError,
  isKeelError,
  toProblemDetails,
} from './index.ts';

describe('KeelError', () => {
  it('carries a stable code, its HTTP status, and the cause chain', () => {
    const cause = new Error('connection refused');
    const error = new KeelError('KEEL_DB_UNAVAILABLE', 'PostgreSQL at 127.0.0.1:5432 is unreachable', {
      cause,
    });
    expect(error.code).toBe('KEEL_DB_UNAVAILABLE');
    expect(error.status).toBe(503);
    expect(error.cause).toBe(cause);
    expect(error.name).toBe('KeelError');
    expect(isKeelError(error, 'KEEL_DB_UNAVAILABLE')).toBe(true);
    expect(isKeelError(error, 'KEEL_NOT_FOUND')).toBe(false);
  });

  it('names the field and what was expected for a bad argument', () => {
    const error = new InvalidArgumentError('options.maxAttempts', 'an integer >= 1', 0);
    expect(error.message).toBe('options.maxAttempts: expected an integer >= 1, got 0');
    expect(error.field).toBe('options.maxAttempts');
    expect(error.name).toBe('InvalidArgumentError');
  });
});

describe('toProblemDetails', () => {
  it('renders a validation error as RFC 9457 problem+json with every field issue', () => {
    const error = new ValidationError('request body', [
      { path: 'items.0.quantity', message: 'must be >= 1' },
      { path: 'customerId', message: 'required' },
    ]);
    const problem = toProblemDetails(error, '/v1/orders');
    expect(problem).toEqual({
      type: 'urn:keel:error:keel_validation_failed',
      title: 'Validation failed',
      status: 400,
      detail: 'request body is invalid: items.0.quantity: must be >= 1; customerId: required',
      code: 'KEEL_VALIDATION_FAILED',
      instance: '/v1/orders',
      errors: [
        { path: 'items.0.quantity', message: 'must be >= 1' },
        { path: 'customerId', message: 'required' },
      ],
    });
  });

  it('adds details as extension members', () => {
    const problem = toProblemDetails(new NotFoundError('order', 'abc'));
    expect(problem).toMatchObject({ status: 404, code: 'KEEL_NOT_FOUND', what: 'order', id: 'abc' });
  });

  it('never leaks the message of an unknown error', () => {
    const problem = toProblemDetails(new Error('syntax error at or near "DROP"'));
    expect(problem.status).toBe(500);
    expect(problem.code).toBe('KEEL_INTERNAL');
    expect(problem.detail).not.toContain('DROP');
  });
});
