import { clientDetailOf, errorCodes, type ErrorCode } from './codes.ts';
import { KeelError, ValidationError, type FieldIssue } from './keel-error.ts';

/** An RFC 9457 problem details document, with keel's `code` and field `errors` as extensions. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  errors?: readonly FieldIssue[];
  [extension: string]: unknown;
}

export const problemContentType = 'application/problem+json';

/** The `type` URI of a code: stable, and the anchor of its entry in docs/errors.md. */
export function problemType(code: ErrorCode): string {
  return `urn:keel:error:${code.toLowerCase()}`;
}

/**
 * Renders any thrown value as problem+json, telling a client only what is about its request:
 * an error whose code describes the request (validation, not found, idempotency, rate limit…)
 * brings its message as `detail` and its details as extension members; one whose code describes
 * the server (database or broker unavailable, schema missing…) brings only its code's fixed
 * `clientDetail`, so an address, a path or SQL text never reaches a client. Errors that are not
 * `KeelError`s become KEEL_INTERNAL, told nothing. Whoever renders the problem logs the error
 * when it withholds something (`messageIsPublic`).
 */
export function toProblemDetails(error: unknown, instance?: string): ProblemDetails {
  const code: ErrorCode = error instanceof KeelError ? error.code : 'KEEL_INTERNAL';
  const { status, title } = errorCodes[code];
  const withheld = clientDetailOf(code);
  // Only an error whose code describes the request is read past its code.
  const told = withheld === undefined && error instanceof KeelError ? error : undefined;
  const problem: ProblemDetails = {
    type: problemType(code),
    title,
    status,
    detail: told?.message ?? withheld ?? errorCodes.KEEL_INTERNAL.clientDetail,
    code,
  };
  if (instance !== undefined) problem.instance = instance;
  if (told instanceof ValidationError) problem.errors = told.issues;
  if (told?.details) {
    for (const [key, value] of Object.entries(told.details)) {
      if (!(key in problem)) problem[key] = value;
    }
  }
  return problem;
}
