import { describe, expect, it } from 'vitest';
import { describeServer, unavailable } from '../db/pg-errors.ts';
import {
  errorCodes,
  InvalidArgumentError,
  KeelError,
  NotFoundError,
  ValidationError,
  isKeelError,
  messageIsPublic,
  toProblemDetails,
  type ErrorCode,
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

  it('tells a client the database is unavailable, not where it is; the error keeps the address for the log', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:6543'), { code: 'ECONNREFUSED' });
    const error = unavailable(describeServer('postgres://shop:secret@10.1.2.3:6543/shop'), refused);
    const problem = toProblemDetails(error, '/v1/orders/1');
    expect(problem).toEqual({
      type: 'urn:keel:error:keel_db_unavailable',
      title: 'Database unavailable',
      status: 503,
      detail: 'The database is unavailable; try again later.',
      code: 'KEEL_DB_UNAVAILABLE',
      instance: '/v1/orders/1',
    });
    expect(JSON.stringify(problem)).not.toMatch(/10\.1\.2\.3|6543|secret/);
    expect(error.message).toContain('10.1.2.3:6543');
    expect(error.details).toEqual({ host: '10.1.2.3', port: 6543 });
  });

  it('renders the message and details only of the codes that describe the request (a reviewed list)', () => {
    const describesRequest: ErrorCode[] = [
      'KEEL_INVALID_ARGUMENT',
      'KEEL_VALIDATION_FAILED',
      'KEEL_MALFORMED_BODY',
      'KEEL_PAYLOAD_TOO_LARGE',
      'KEEL_HEADERS_TOO_LARGE',
      'KEEL_REQUEST_TIMEOUT',
      'KEEL_UNSUPPORTED_MEDIA_TYPE',
      'KEEL_UNAUTHENTICATED',
      'KEEL_NOT_FOUND',
      'KEEL_ROUTE_NOT_FOUND',
      'KEEL_CLOCK_DRIFT',
      'KEEL_MESSAGE_INVALID',
      'KEEL_UNKNOWN_MESSAGE_TYPE',
      'KEEL_STREAM_TRIMMED',
      'KEEL_RATE_LIMITED',
      'KEEL_FEATURE_OFF',
      'KEEL_VERSION_CONFLICT',
      'KEEL_ALREADY_EXISTS',
      'KEEL_BAD_CONSISTENCY_TOKEN',
      'KEEL_IDEMPOTENCY_KEY_REQUIRED',
      'KEEL_IDEMPOTENCY_KEY_REUSED',
      'KEEL_IDEMPOTENCY_IN_FLIGHT',
    ];
    const codes = Object.keys(errorCodes) as ErrorCode[];
    // A new code fails here until someone decides whom its message is written for.
    expect(codes.filter(messageIsPublic).sort()).toEqual([...describesRequest].sort());
    for (const code of codes) {
      const error = new KeelError(code, 'at 10.1.2.3:6543', { details: { host: '10.1.2.3' } });
      const problem = toProblemDetails(error);
      expect(problem, code).toMatchObject({ code, status: errorCodes[code].status });
      if (messageIsPublic(code))
        expect(problem, code).toMatchObject({ detail: error.message, host: '10.1.2.3' });
      else expect(JSON.stringify(problem), code).not.toContain('10.1.2.3');
    }
  });
});
