import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { openApiDocument, type HttpOperation } from './index.ts';

const item = z.strictObject({ sku: z.string(), quantity: z.number().int().min(1) });
const order = z.object({ id: z.uuid(), items: z.array(item) });
const signup = z.strictObject({ email: z.email().transform((email) => email.toLowerCase()) });

const getOrder: HttpOperation = {
  method: 'get',
  path: '/v1/orders/:id',
  operationId: 'getOrder',
  summary: 'Read an order',
  params: z.strictObject({ id: z.uuid() }),
  query: z.strictObject({ expand: z.enum(['items']).optional() }),
  headers: { 'Consistency-Token': { description: 'from a write' } },
  responses: {
    200: {
      description: 'the order',
      body: order,
      headers: { ETag: { description: 'version', required: true } },
    },
    404: {
      description: 'none',
      contentType: 'application/problem+json',
      body: z.object({ code: z.string() }),
    },
  },
};

const info = { title: 't', version: '1' };

/** An operation object as the document holds it, typed as far as these tests read it. */
interface WrittenOperation {
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<string, { content: Record<string, { schema: unknown }> }>;
}

describe('openApiDocument', () => {
  it('writes paths, parameters, bodies and responses as OpenAPI 3.1, naming shared response bodies once', () => {
    const document = openApiDocument({
      info,
      schemas: { Order: order },
      operations: [
        getOrder,
        {
          method: 'post',
          path: '/v1/signups',
          operationId: 'signUp',
          summary: 's',
          body: { schema: signup },
          responses: { 201: { description: 'created', body: order } },
        },
      ],
    });
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths)).toEqual(['/v1/orders/{id}', '/v1/signups']);
    const get = document.paths['/v1/orders/{id}']!.get as WrittenOperation;
    expect(get.parameters).toEqual([
      {
        name: 'id',
        in: 'path',
        required: true,
        schema: expect.objectContaining({ type: 'string', format: 'uuid' }) as unknown,
      },
      { name: 'expand', in: 'query', required: false, schema: { type: 'string', enum: ['items'] } },
      {
        name: 'Consistency-Token',
        in: 'header',
        description: 'from a write',
        required: false,
        schema: { type: 'string' },
      },
    ]);
    expect(get.responses['200']).toEqual({
      description: 'the order',
      headers: { ETag: { description: 'version', required: true, schema: { type: 'string' } } },
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Order' } } },
    });
    expect(get.responses['404']?.content['application/problem+json']?.schema).toMatchObject({
      type: 'object',
    });
    expect(document.components.schemas.Order).toMatchObject({
      type: 'object',
      required: ['id', 'items'],
      additionalProperties: false,
    });
    expect(JSON.stringify(document)).not.toContain('$schema');
    const post = document.paths['/v1/signups']!.post as WrittenOperation;
    // A request body is the input it accepts (before the transform), closed to unknown fields.
    expect(post.requestBody).toEqual({
      required: true,
      content: {
        'application/json': {
          schema: expect.objectContaining({
            type: 'object',
            required: ['email'],
            additionalProperties: false,
          }) as unknown,
        },
      },
    });
  });

  it('applies the document’s security to every operation but those that name their own', () => {
    const document = openApiDocument({
      info,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      security: ['bearer'],
      operations: [
        getOrder,
        { ...getOrder, path: '/healthz', operationId: 'live', params: undefined, security: [] },
      ],
    });
    expect(document.security).toEqual([{ bearer: [] }]);
    expect(document.paths['/v1/orders/{id}']!.get).not.toHaveProperty('security');
    expect(document.paths['/healthz']!.get).toHaveProperty('security', []);
  });

  it('refuses a contract that contradicts itself, naming what is wrong', () => {
    const build = (operations: HttpOperation[], security?: string[]) => () =>
      openApiDocument({ info, operations, ...(security === undefined ? {} : { security }) });
    expect(build([{ ...getOrder, params: undefined }])).toThrow(/params.*getOrder: none/);
    expect(build([{ ...getOrder, params: z.strictObject({ id: z.uuid(), other: z.string() }) }])).toThrow(
      /params/,
    );
    expect(build([getOrder, { ...getOrder, method: 'put' }])).toThrow(/operationId/);
    expect(build([getOrder, { ...getOrder, operationId: 'again' }])).toThrow(
      /one operation per method and path/,
    );
    expect(build([getOrder], ['nope'])).toThrow(/security/);
    expect(build([{ ...getOrder, security: ['nope'] }])).toThrow(/security of GET \/v1\/orders\/:id/);
    expect(build([{ ...getOrder, query: z.string() }])).toThrow(/query/);
    expect(build([{ ...getOrder, responses: {} }])).toThrow(/responses/);
    expect(build([getOrder, { ...getOrder, operationId: 'again' }])).toThrow(
      expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT' }),
    );
  });
});
