import { hash } from 'node:crypto';

/**
 * A hash of what a request asks for: method, path, query and body. Object keys are sorted first,
 * so the same JSON sent with its fields in another order is the same request; so are the query's
 * parameters (those of one name keep their order). A request without a query hashes as it did
 * before the query counted, so keys stored then still replay.
 */
export function requestFingerprint(method: string, path: string, body: unknown, query = ''): string {
  const target = query === '' ? path : `${path}?${canonicalQuery(query)}`;
  // The one-shot hash: a third of createHash's cost, which builds a Hash object per call.
  return hash('sha256', `${method.toUpperCase()}\n${target}\n${canonicalJson(body)}`, 'base64url');
}

/** The fingerprint of an HTTP request as fastify hands it over: its method, target and parsed body. */
export function fingerprintOf(request: { method: string; url: string; body: unknown }): string {
  // A body the handler reads as a stream (an upload) can be read only once, by the handler:
  // method, path and query stand for the request. Walked as an object, its socket's cycles
  // overflowed the stack on every request.
  const body =
    typeof (request.body as { pipe?: unknown } | null)?.pipe === 'function' ? undefined : request.body;
  const queryAt = request.url.indexOf('?');
  if (queryAt < 0) return requestFingerprint(request.method, request.url, body);
  return requestFingerprint(
    request.method,
    request.url.slice(0, queryAt),
    body,
    request.url.slice(queryAt + 1),
  );
}

/** The query's parameters sorted by name (a stable sort: repeated names keep their order). */
function canonicalQuery(query: string): string {
  const name = (parameter: string): string => parameter.split('=', 1)[0]!;
  return query
    .split('&')
    .filter((parameter) => parameter !== '')
    .sort((a, b) => (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0))
    .join('&');
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
