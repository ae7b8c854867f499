// PostgreSQL's jsonb refuses two things a JavaScript string may hold: U+0000 and a lone UTF-16
// surrogate (a string cut inside an emoji). A value the runner writes with its progress must hold
// neither, or the write fails on every runner that takes the instance over, and it never moves on.

import { InvalidArgumentError } from '../errors/index.ts';

// eslint-disable-next-line no-control-regex -- U+0000 is one of the two things to find
const unstorable = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const unstorableAll = new RegExp(unstorable.source, 'g');

/** Where in `value` (JSON) the first string or key jsonb cannot store is: `''`, `.a.0`; undefined if none. */
export function unstorableAt(value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') return unstorable.test(value) ? path : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, item] of Object.entries(value)) {
    const at = `${path}.${key}`;
    if (unstorable.test(key)) return at;
    const found = unstorableAt(item, at);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** `text` as jsonb can store it: U+0000 and lone surrogates become U+FFFD. */
export function storableText(text: string): string {
  return text.replace(unstorableAll, '\ufffd');
}

/** What a refusal of `unstorableAt`'s finding expects. */
export const refusedText = 'text without U+0000 or a lone surrogate (jsonb refuses them)';

/** A lone surrogate or U+0000, as JSON.stringify escapes them. */
const escapedUnstorable = /\\u0000|\\ud[89a-f]/i;

/**
 * `value` as JSON text jsonb will take, or `KEEL_INVALID_ARGUMENT` naming `field` (and the path
 * inside it) for a value JSON cannot hold (a BigInt, a cycle, a function) or text jsonb refuses.
 * The text is searched for escapes first, so a value without any costs one regular expression.
 */
export function storableJson(value: unknown, field: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new InvalidArgumentError(
      field,
      `a JSON value (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  if (text === undefined) throw new InvalidArgumentError(field, 'a JSON value', value);
  if (escapedUnstorable.test(text)) {
    const at = unstorableAt(JSON.parse(text));
    if (at !== undefined) throw new InvalidArgumentError(`${field}${at}`, refusedText);
  }
  return text;
}
