import { errorCodes, type ErrorCode } from './codes.ts';

export interface KeelErrorOptions {
  cause?: unknown;
  /** Plain data that helps the caller act on the error; rendered into problem+json. */
  details?: Record<string, unknown>;
}

/**
 * The one base of every error keel throws. `code` is stable across versions and listed in
 * `docs/errors.md`; `message` is for people and may change.
 */
export class KeelError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: KeelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return errorCodes[this.code].status;
  }
}

export function isKeelError(error: unknown, code?: ErrorCode): error is KeelError {
  return error instanceof KeelError && (code === undefined || error.code === code);
}

/** One problem with one input field: where it is and what was expected. */
export interface FieldIssue {
  /** Dotted path to the field, `items.0.quantity`; empty for the value as a whole. */
  path: string;
  message: string;
}

/** A public function got input it cannot use. The message names the field and what was expected. */
export class InvalidArgumentError extends KeelError {
  readonly field: string;
  constructor(field: string, expected: string, received?: unknown) {
    const got = received === undefined ? '' : `, got ${describe(received)}`;
    super('KEEL_INVALID_ARGUMENT', `${field}: expected ${expected}${got}`, { details: { field } });
    this.field = field;
  }
}

/** Input failed its schema; `issues` names every field that is wrong. */
export class ValidationError extends KeelError {
  readonly issues: readonly FieldIssue[];
  constructor(subject: string, issues: readonly FieldIssue[], options: KeelErrorOptions = {}) {
    const summary = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    super('KEEL_VALIDATION_FAILED', `${subject} is invalid: ${summary}`, options);
    this.issues = issues;
  }
}

export class NotFoundError extends KeelError {
  constructor(what: string, id: string) {
    super('KEEL_NOT_FOUND', `${what} ${id} was not found`, { details: { what, id } });
  }
}

/** Work stopped because its AbortSignal fired; `cause` is the signal's reason. */
export class AbortedError extends KeelError {
  constructor(what: string, reason?: unknown) {
    super('KEEL_ABORTED', `${what} was aborted`, { cause: reason });
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  return `a ${typeof value}`;
}
