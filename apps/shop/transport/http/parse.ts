import type { z } from 'zod';
import { ValidationError } from '../../../../src/errors/index.ts';
import { zodIssues } from '../../../../src/messaging/message-type.ts';

/** Validates a request part against its contract; the error names every wrong field. */
export function parseRequest<S extends z.ZodType>(schema: S, value: unknown, subject: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new ValidationError(subject, zodIssues(result.error));
  return result.data;
}
