import { describe, expect, it } from 'vitest';
import { errorCodes, KeelError, toProblemDetails, ValidationError, type ErrorCode } from '../errors/index.ts';
import { problemDetailsSchema } from './problem-schema.ts';

describe('problemDetailsSchema', () => {
  it('describes the problem details of every error code, and of a failed validation with its fields', () => {
    for (const code of Object.keys(errorCodes) as ErrorCode[]) {
      const problem = toProblemDetails(new KeelError(code, 'x', { details: { retryAfterMs: 5 } }), '/v1/x');
      expect(problemDetailsSchema.safeParse(problem).success, code).toBe(true);
    }
    const invalid = toProblemDetails(
      new ValidationError('body', [{ path: 'items.0.sku', message: 'required' }]),
    );
    expect(problemDetailsSchema.parse(invalid)).toMatchObject({ errors: [{ path: 'items.0.sku' }] });
    expect(toProblemDetails(new Error('secret'))).toMatchObject({ code: 'KEEL_INTERNAL' });
  });

  it('refuses what is not one', () => {
    expect(
      problemDetailsSchema.safeParse({ title: 't', status: 404, detail: 'd', code: 'NOT_FOUND' }).success,
    ).toBe(false);
  });
});
