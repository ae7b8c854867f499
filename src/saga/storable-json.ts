// PostgreSQL's jsonb refuses two things a JavaScript string may hold: U+0000 and a lone UTF-16
// surrogate (a string cut inside an emoji). A value the runner writes with its progress must hold
// neither, or the write fails on every runner that takes the instance over, and it never moves on.

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
