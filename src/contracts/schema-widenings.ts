import type { JsonSchema } from './openapi-document.ts';

/**
 * The ways a value valid under `next` might be invalid under `previous`: what a reader that
 * still validates with `previous` would refuse. Empty when `next` allows only values `previous`
 * allowed (it may allow fewer). For what a service produces — a message payload, a response.
 *
 * Written for the JSON Schemas zod gives (objects, arrays, primitives, enums, formats, bounds,
 * nullable as `anyOf`), with `$ref`s already inlined: a keyword it does not understand must be
 * unchanged, else it is reported, so it errs toward a reported change, never a silent one.
 */
export function schemaWidenings(previous: JsonSchema, next: JsonSchema): string[] {
  return compare(previous, next, '', produced);
}

/**
 * The ways a value valid under `previous` might be refused by `next`: what an old client may
 * still send that the new version turns away. Empty when `next` accepts everything `previous`
 * did. For what a service accepts — a request body, a parameter.
 */
export function schemaNarrowings(previous: JsonSchema, next: JsonSchema): string[] {
  return compare(next, previous, '', accepted);
}

/**
 * How a difference reads. Both directions compare a narrow schema against a wide one; for
 * what is produced the narrow one is the published schema, for what is accepted the new one.
 */
interface Wording {
  /** Which side the reader knows as the published contract. */
  published: 'narrow' | 'wide';
  allows: (what: string) => string;
  unlimited: (what: string) => string;
  typeOutside: (type: string, narrowTypes: string) => string;
  valuesOutside: (values: string) => string;
  propertyOutside: string;
  unrequired: string;
  opened: string;
  othersUnlimited: string;
  itemsUnlimited: string;
}

const produced: Wording = {
  published: 'narrow',
  allows: (what) => `allows ${what}`,
  unlimited: (what) => `no longer limited to ${what}`,
  typeOutside: (type, narrowTypes) => `may now be ${type} (was ${narrowTypes})`,
  valuesOutside: (values) => `may now be ${values}`,
  propertyOutside: 'added, where the old schema allowed no other property',
  unrequired: 'no longer required',
  opened: 'now allows properties it does not name',
  othersUnlimited: 'other properties no longer limited',
  itemsUnlimited: 'items no longer limited',
};

const accepted: Wording = {
  published: 'wide',
  allows: (what) => `no longer accepts ${what}`,
  unlimited: (what) => `now accepts only ${what}`,
  typeOutside: (type, narrowTypes) => `no longer accepts ${type} (now ${narrowTypes})`,
  valuesOutside: (values) => `no longer accepts ${values}`,
  propertyOutside: 'no longer accepted',
  unrequired: 'now required',
  opened: 'no longer accepts properties it does not name',
  othersUnlimited: 'other properties now limited',
  itemsUnlimited: 'items now limited',
};

/** Where `wide` allows a value that `narrow` does not, in `words`. */
function compare(narrow: JsonSchema, wide: JsonSchema, at: string, words: Wording): string[] {
  if (isAnything(narrow) || deepEqual(narrow, wide)) return [];
  const where = at === '' ? '(the value)' : at;
  const wideBranches = branches(wide);
  const narrowBranches = branches(narrow);
  if (wideBranches.length > 1 || narrowBranches.length > 1) {
    // Each way the wide schema allows a value must be allowed by some way the narrow one does.
    const found: string[] = [];
    for (const branch of wideBranches) {
      const each = narrowBranches.map((candidate) => compare(candidate, branch, at, words));
      if (each.some((lines) => lines.length === 0)) continue;
      const closest = each.sort((a, b) => a.length - b.length)[0];
      found.push(...(closest ?? [`${where}: ${words.allows(describe(branch))}`]));
    }
    return found;
  }
  return compareSingle(narrow, wide, at, where, words);
}

function compareSingle(
  narrow: JsonSchema,
  wide: JsonSchema,
  at: string,
  where: string,
  words: Wording,
): string[] {
  const found: string[] = [];
  const narrowTypes = types(narrow);
  const wideTypes = types(wide);
  if (narrowTypes !== undefined) {
    if (wideTypes === undefined) found.push(`${where}: ${words.unlimited(narrowTypes.join(' or '))}`);
    else {
      for (const type of wideTypes) {
        if (!narrowTypes.includes(type) && !(type === 'integer' && narrowTypes.includes('number'))) {
          found.push(`${where}: ${words.typeOutside(type, narrowTypes.join(' or '))}`);
        }
      }
    }
  }
  found.push(...enumDifferences(narrow, wide, where, words));
  // Shown as published → now, whichever side that is.
  const change = (keyword: string, narrowValue: unknown, wideValue: unknown): string => {
    const [from, to] = words.published === 'narrow' ? [narrowValue, wideValue] : [wideValue, narrowValue];
    if (to === undefined) return `${where}: ${keyword} ${JSON.stringify(from)} dropped`;
    if (from === undefined) return `${where}: ${keyword} ${JSON.stringify(to)} added`;
    return `${where}: ${keyword} ${JSON.stringify(from)} → ${JSON.stringify(to)}`;
  };
  for (const [keyword, tighter] of bounds) {
    const limit = narrow[keyword];
    if (typeof limit !== 'number') continue;
    const other = wide[keyword];
    if (typeof other !== 'number' || !tighter(other, limit)) {
      found.push(change(keyword, limit, typeof other === 'number' ? other : undefined));
    }
  }
  if (narrow.format !== undefined && narrow.format !== wide.format)
    found.push(change('format', narrow.format, wide.format));
  // Patterns are compared as text: one regular expression's language is not checked against another's.
  if (narrow.pattern !== undefined && narrow.pattern !== wide.pattern)
    found.push(`${where}: pattern changed`);
  found.push(...objectDifferences(narrow, wide, at, where, words));
  if (isSchema(narrow.items)) {
    found.push(
      ...(isSchema(wide.items)
        ? compare(narrow.items, wide.items, `${at}[]`, words)
        : [`${where}: ${words.itemsUnlimited}`]),
    );
  }
  for (const keyword of Object.keys(narrow)) {
    if (understood.has(keyword) || deepEqual(narrow[keyword], wide[keyword])) continue;
    found.push(`${where}: ${keyword} changed`);
  }
  return found;
}

function objectDifferences(
  narrow: JsonSchema,
  wide: JsonSchema,
  at: string,
  where: string,
  words: Wording,
): string[] {
  const found: string[] = [];
  const narrowProperties = (narrow.properties ?? {}) as Record<string, JsonSchema>;
  const wideProperties = (wide.properties ?? {}) as Record<string, JsonSchema>;
  const closed = narrow.additionalProperties === false;
  const path = (name: string) => (at === '' ? name : `${at}.${name}`);
  for (const [name, schema] of Object.entries(wideProperties)) {
    const limit = narrowProperties[name];
    if (limit !== undefined) found.push(...compare(limit, schema, path(name), words));
    else if (closed) found.push(`${path(name)}: ${words.propertyOutside}`);
    else if (isSchema(narrow.additionalProperties)) {
      found.push(...compare(narrow.additionalProperties, schema, path(name), words));
    }
  }
  // A property the wide schema does not name is whatever its other properties may be.
  if (wide.additionalProperties !== false) {
    const rest = isSchema(wide.additionalProperties) ? wide.additionalProperties : {};
    for (const [name, schema] of Object.entries(narrowProperties)) {
      if (!(name in wideProperties)) found.push(...compare(schema, rest, path(name), words));
    }
  }
  const wideRequired = new Set((wide.required as string[] | undefined) ?? []);
  for (const name of (narrow.required as string[] | undefined) ?? []) {
    if (!wideRequired.has(name)) found.push(`${path(name)}: ${words.unrequired}`);
  }
  if (closed && wide.additionalProperties !== false) {
    found.push(`${where}: ${words.opened}`);
  } else if (isSchema(narrow.additionalProperties)) {
    if (wide.additionalProperties === undefined || wide.additionalProperties === true) {
      found.push(`${where}: ${words.othersUnlimited}`);
    } else if (isSchema(wide.additionalProperties)) {
      found.push(...compare(narrow.additionalProperties, wide.additionalProperties, `${at}.*`, words));
    }
  }
  return found;
}

function enumDifferences(narrow: JsonSchema, wide: JsonSchema, where: string, words: Wording): string[] {
  const allowed = values(narrow);
  if (allowed === undefined) return [];
  const listed = (list: unknown[]) => list.map((v) => JSON.stringify(v)).join(', ');
  const others = values(wide);
  if (others === undefined) return [`${where}: ${words.unlimited(listed(allowed))}`];
  const outside = others.filter((value) => !allowed.some((old) => deepEqual(old, value)));
  return outside.length === 0 ? [] : [`${where}: ${words.valuesOutside(listed(outside))}`];
}

/** The keywords compared above; any other must stay as it was. */
const understood = new Set([
  'type',
  'enum',
  'const',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'format',
  'pattern',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'anyOf',
  'oneOf',
  '$ref',
  'description',
  'title',
  'default',
  'examples',
]);

/** Keywords whose new value must be as tight as the old: a minimum may rise, a maximum fall. */
const bounds: [string, (now: number, old: number) => boolean][] = [
  ['minimum', (now, old) => now >= old],
  ['exclusiveMinimum', (now, old) => now >= old],
  ['minLength', (now, old) => now >= old],
  ['minItems', (now, old) => now >= old],
  ['maximum', (now, old) => now <= old],
  ['exclusiveMaximum', (now, old) => now <= old],
  ['maxLength', (now, old) => now <= old],
  ['maxItems', (now, old) => now <= old],
];

function branches(schema: JsonSchema): JsonSchema[] {
  const list = (schema.anyOf ?? schema.oneOf) as JsonSchema[] | undefined;
  return Array.isArray(list) ? list : [schema];
}

function types(schema: JsonSchema): string[] | undefined {
  if (typeof schema.type === 'string') return [schema.type];
  if (Array.isArray(schema.type)) return schema.type as string[];
  return undefined;
}

function values(schema: JsonSchema): unknown[] | undefined {
  if (Array.isArray(schema.enum)) return schema.enum as unknown[];
  if ('const' in schema) return [schema.const];
  return undefined;
}

function isAnything(schema: JsonSchema): boolean {
  return Object.keys(schema).every((keyword) =>
    ['description', 'title', 'default', 'examples'].includes(keyword),
  );
}

function isSchema(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(schema: JsonSchema): string {
  return JSON.stringify(schema).slice(0, 80);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  return aKeys.every((key) =>
    deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
  );
}
