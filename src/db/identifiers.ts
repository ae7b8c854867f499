import { InvalidArgumentError } from '../errors/index.ts';

// Lower-case only: PostgreSQL folds unquoted names to lower case, so a name that needs quoting
// would resolve differently in hand-written SQL than in keel's own statements.
const identifier = /^[a-z_][a-z0-9_]{0,62}$/;

/** Checks a schema or channel name keel puts into SQL text; returns it unchanged. */
export function checkIdentifier(field: string, value: unknown): string {
  if (typeof value !== 'string' || !identifier.test(value)) {
    throw new InvalidArgumentError(
      field,
      'a lower-case SQL identifier: a letter or _, then letters, digits or _, at most 63 characters',
      value,
    );
  }
  return value;
}

/** Quotes a name already checked by `checkIdentifier`. */
export function quoteIdentifier(name: string): string {
  return `"${name}"`;
}
