import { z } from 'zod';

/** A JSON Schema as a plain object. */
export type JsonSchema = Record<string, unknown>;

/**
 * A zod schema as the JSON Schema a contract embeds: OpenAPI 3.1's dialect (draft 2020-12) or
 * AsyncAPI's default format (a superset of draft 7), without the `$schema` line the document's
 * own version already says.
 */
export function zodJsonSchema(
  schema: z.ZodType,
  io: 'input' | 'output',
  target: 'draft-2020-12' | 'draft-7',
): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, target }) as JsonSchema;
  return rest;
}

/** One reference token of a JSON Pointer (RFC 6901): `~` as `~0`, `/` as `~1`. */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The token back from its pointer form. */
export function unescapePointerToken(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}
