import { Ajv } from 'ajv';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { JsonSchema } from './openapi-document.ts';
import { schemaWidenings } from './schema-widenings.ts';
import { propertyRuns } from '../testing/property-runs.ts';

const json = (schema: z.ZodType): JsonSchema => {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-7' }) as JsonSchema;
  return rest;
};

const order = z.object({
  id: z.uuid(),
  status: z.enum(['PENDING', 'CONFIRMED']),
  quantity: z.number().int().min(1).max(100),
  note: z.string().max(200).optional(),
});

describe('schemaWidenings', () => {
  it('finds nothing between a schema and itself, or when the new one allows less', () => {
    expect(schemaWidenings(json(order), json(order))).toEqual([]);
    const narrower = order.extend({
      status: z.enum(['PENDING']),
      quantity: z.number().int().min(2).max(10),
      note: z.string().max(100),
    });
    expect(schemaWidenings(json(order), json(narrower))).toEqual([]);
    // Fewer properties in a closed object: the old reader never required them.
    expect(schemaWidenings(json(order), json(order.omit({ note: true })))).toEqual([]);
    expect(schemaWidenings(json(z.number()), json(z.number().int()))).toEqual([]);
    expect(schemaWidenings(json(z.string().nullable()), json(z.string()))).toEqual([]);
  });

  it('names each way the new schema allows what the old did not', () => {
    const wider = order.extend({
      status: z.enum(['PENDING', 'CONFIRMED', 'LOST']),
      quantity: z.number().min(0),
      note: z.string(),
      extra: z.boolean(),
    });
    expect(schemaWidenings(json(order), json(wider))).toEqual([
      'status: may now be "LOST"',
      'quantity: may now be number (was integer)',
      'quantity: minimum 1 → 0',
      'quantity: maximum 100 dropped',
      'note: maxLength 200 dropped',
      'extra: added, where the old schema allowed no other property',
    ]);
    expect(schemaWidenings(json(order), json(order.partial({ quantity: true })))).toEqual([
      'quantity: no longer required',
    ]);
    expect(schemaWidenings(json(z.string()), json(z.string().nullable()))).toEqual([
      '(the value): may now be null (was string)',
    ]);
    expect(
      schemaWidenings(json(z.object({ a: z.string() })), json(z.looseObject({ a: z.string() }))),
    ).toEqual(['(the value): now allows properties it does not name']);
    expect(schemaWidenings(json(z.array(z.uuid()).max(3)), json(z.array(z.string())))).toEqual([
      '(the value): maxItems 3 dropped',
      '[]: format "uuid" dropped',
      '[]: pattern changed',
    ]);
    // A keyword it does not compare must stay as it was.
    expect(schemaWidenings({ type: 'string', contentEncoding: 'base64' }, { type: 'string' })).toEqual([
      '(the value): contentEncoding changed',
    ]);
  });

  // Soundness: when it finds nothing, every value the new schema accepts, the old one accepts too.
  // The new schema is the old one changed a little (a bound moved, a property dropped or added,
  // an object opened or closed, null allowed or not), so both answers come up often.
  it('finds a widening whenever some value passes the new schema and fails the old', () => {
    const ajv = new Ajv({ strict: false });
    let silentWithValues = 0;
    const pairs = schema(2).chain((before) => fc.tuple(fc.constant(before), changed(before, 2)));
    const property = fc.property(pairs, fc.array(value(2), { maxLength: 40 }), ([before, after], samples) => {
      if (schemaWidenings(before, after).length > 0) return;
      const old = ajv.compile(before);
      const now = ajv.compile(after);
      const accepted = samples.filter((sample) => now(sample));
      if (accepted.length > 0 && JSON.stringify(before) !== JSON.stringify(after)) silentWithValues++;
      for (const sample of accepted)
        expect(old(sample), JSON.stringify({ before, after, sample })).toBe(true);
    });
    fc.assert(property, { numRuns: propertyRuns(500) });
    // The property was put to the test, not passed by never finding a quiet pair.
    expect(silentWithValues).toBeGreaterThan(20);
  });
});

// A small grammar of the schemas zod writes, and values that exercise their edges.
const names = ['a', 'b', 'c'];

function schema(depth: number): fc.Arbitrary<JsonSchema> {
  const leaf = fc.oneof(
    fc.record(
      {
        type: fc.constant('string'),
        minLength: fc.integer({ min: 0, max: 3 }),
        maxLength: fc.integer({ min: 1, max: 6 }),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record({
      type: fc.constant('string'),
      enum: fc.uniqueArray(fc.constantFrom('x', 'y', 'z'), { minLength: 1 }),
    }),
    fc.record(
      {
        type: fc.constantFrom('integer', 'number'),
        minimum: fc.integer({ min: -2, max: 2 }),
        maximum: fc.integer({ min: 0, max: 10 }),
      },
      { requiredKeys: ['type'] },
    ),
    fc.constant({ type: 'boolean' }),
    fc.constant({}),
  );
  if (depth === 0) return leaf;
  const inner = schema(depth - 1);
  const object = fc
    .record({
      properties: fc.dictionary(fc.constantFrom(...names), inner, { maxKeys: 3 }),
      required: fc.subarray(names),
      closed: fc.boolean(),
    })
    .map(({ properties, required, closed }) => ({
      type: 'object',
      properties,
      required: required.filter((name) => name in properties),
      ...(closed ? { additionalProperties: false } : {}),
    }));
  const array = fc.record(
    { type: fc.constant('array'), items: inner, maxItems: fc.integer({ min: 0, max: 3 }) },
    { requiredKeys: ['type', 'items'] },
  );
  const nullable = inner.map((branch) => ({ anyOf: [branch, { type: 'null' }] }));
  return fc.oneof(leaf, object, array, nullable);
}

/** `schema` with one small change somewhere in it, or none. */
function changed(schema: JsonSchema, depth: number): fc.Arbitrary<JsonSchema> {
  const here: fc.Arbitrary<JsonSchema>[] = [
    fc.constant(schema),
    fc.constant({ anyOf: [schema, { type: 'null' }] }),
    fc
      .constantFrom('minimum', 'maximum', 'minLength', 'maxLength', 'maxItems')
      .chain((keyword) =>
        fc
          .integer({ min: keyword.endsWith('imum') ? -2 : 0, max: 8 })
          .map((bound) => ({ ...schema, [keyword]: bound })),
      ),
    fc
      .constantFrom('minimum', 'maximum', 'maxLength', 'enum', 'additionalProperties', 'required')
      .map((keyword) => {
        const { [keyword]: _dropped, ...rest } = schema;
        return rest;
      }),
  ];
  if (schema.type === 'object') {
    const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
    here.push(fc.constant({ ...schema, additionalProperties: false }));
    here.push(
      fc.constantFrom(...names).map((name) => ({
        ...schema,
        required: [...new Set([...((schema.required as string[]) ?? []), name])].filter(
          (n) => n in properties,
        ),
      })),
    );
    const keys = Object.keys(properties);
    if (keys.length > 0 && depth > 0) {
      here.push(
        fc.constantFrom(...keys).chain((key) =>
          changed(properties[key]!, depth - 1).map((inner) => ({
            ...schema,
            properties: { ...properties, [key]: inner },
          })),
        ),
      );
      here.push(
        fc.constantFrom(...keys).map((key) => {
          const { [key]: _gone, ...rest } = properties;
          return { ...schema, properties: rest };
        }),
      );
    }
  }
  if (schema.type === 'array' && depth > 0) {
    here.push(changed(schema.items as JsonSchema, depth - 1).map((items) => ({ ...schema, items })));
  }
  if (schema.type === 'integer') here.push(fc.constant({ ...schema, type: 'number' }));
  if (schema.type === 'number') here.push(fc.constant({ ...schema, type: 'integer' }));
  if (Array.isArray(schema.anyOf)) here.push(fc.constant((schema.anyOf as JsonSchema[])[0]!));
  return fc.oneof(...here);
}

function value(depth: number): fc.Arbitrary<unknown> {
  const leaf = fc.oneof(
    fc.constantFrom('', 'x', 'y', 'z', 'abcd', 'abcdefgh'),
    fc.constantFrom(-3, -1, 0, 1, 2.5, 5, 10, 11),
    fc.boolean(),
    fc.constant(null),
  );
  if (depth === 0) return leaf;
  return fc.oneof(
    leaf,
    fc.dictionary(fc.constantFrom(...names, 'd'), value(depth - 1), { maxKeys: 4 }),
    fc.array(value(depth - 1), { maxLength: 4 }),
  );
}
