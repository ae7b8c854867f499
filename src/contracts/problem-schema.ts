import { z } from 'zod';

/**
 * The body of every error keel's HTTP parts answer with (`toProblemDetails`): RFC 9457 problem
 * details with keel's `code` and, for input that failed its schema, the fields that are wrong.
 * Other members are the error's details, so the object stays open.
 */
export const problemDetailsSchema = z
  .object({
    type: z.string().describe('`urn:keel:error:<code>`: stable, and documented in keel’s docs/errors.md'),
    title: z.string(),
    status: z.number().int().min(100).max(599),
    detail: z.string(),
    // Open on purpose: a new code in a later version must not break a client built against this one.
    code: z
      .string()
      .regex(/^KEEL_[A-Z_]+$/)
      .describe('Stable and documented in keel’s docs/errors.md; new codes may appear'),
    instance: z.string().optional().describe('The request path'),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .describe('Every field that failed its schema'),
  })
  .catchall(z.unknown());

/** `application/problem+json`, keel's error bodies' content type. */
export { problemContentType } from '../errors/index.ts';
