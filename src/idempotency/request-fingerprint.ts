import { hash } from 'node:crypto';

/**
 * A hash of what a request asks for: method, path and body. Object keys are sorted first, so
 * the same JSON sent with its fields in another order is the same request.
 */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  // The one-shot hash: a third of createHash's cost, which builds a Hash object per call.
  return hash('sha256', `${method.toUpperCase()}\n${path}\n${canonicalJson(body)}`, 'base64url');
}

/**
 * `JSON.stringify(value)` with every object's keys in sorted order ('' for undefined). Written
 * out rather than as a replacer: JSON.stringify calls a replacer for every value and the sort
 * needs a copy of every object, which made this most of an idempotent request's own CPU.
 */
export function canonicalJson(value: unknown): string {
  return write(value, '') ?? '';
}

/** One value as JSON, or undefined where JSON.stringify leaves it out (undefined, functions, symbols). */
function write(value: unknown, key: string): string | undefined {
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  )
    value = (value as { toJSON(key: string): unknown }).toJSON(key);
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (value instanceof Number || value instanceof String || value instanceof Boolean)
    return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += write(value[i], String(i)) ?? 'null';
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  let out = '{';
  for (const name of sortedKeys(record)) {
    const item = write(record[name], name);
    if (item === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(name)}:${item}`;
  }
  return `${out}}`;
}

/**
 * The keys in the order the first version's sorted copy put them in, which stored fingerprints
 * depend on: JavaScript lists integer-like keys ('0', '17') first, ascending, whatever the
 * insertion order, and the others after them — sorted.
 */
function sortedKeys(record: Record<string, unknown>): string[] {
  const keys = Object.keys(record);
  let indices = 0;
  while (indices < keys.length && isArrayIndex(keys[indices]!)) indices++;
  if (indices === 0) return keys.sort();
  return [...keys.slice(0, indices), ...keys.slice(indices).sort()];
}

function isArrayIndex(key: string): boolean {
  return /^(?:0|[1-9]\d{0,9})$/.test(key) && Number(key) < 4_294_967_295;
}
