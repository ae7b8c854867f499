import { errorCodes, type ErrorCode } from './codes.ts';
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
 * Renders any thrown value as problem+json. Errors that are not `KeelError`s become
 * KEEL_INTERNAL with a generic detail, so a stack trace or SQL text never reaches a client.
 */
export function toProblemDetails(error: unknown, instance?: string): ProblemDetails {
  const keel = error instanceof KeelError ? error : undefined;
  const code: ErrorCode = keel?.code ?? 'KEEL_INTERNAL';
  const { status, title } = errorCodes[code];
  const problem: ProblemDetails = {
    type: problemType(code),
    title,
    status,
    detail: keel ? keel.message : 'The server failed to handle the request.',
    code,
  };
  if (instance !== undefined) problem.instance = instance;
  if (keel instanceof ValidationError) problem.errors = keel.issues;
  if (keel?.details && code !== 'KEEL_INTERNAL') {
    for (const [key, value] of Object.entries(keel.details)) {
      if (!(key in problem)) problem[key] = value;
    }
  }
  return problem;
}
