import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { openApiDocument } from '../contracts/index.ts';
import { openApiResponses } from './openapi-responses.ts';

const order = z.object({ id: z.uuid(), status: z.enum(['PENDING', 'CONFIRMED']) });
const problem = {
  description: 'p',
  contentType: 'application/problem+json',
  body: z.object({ code: z.string() }),
};
const document = openApiDocument({
  info: { title: 't', version: '1' },
  schemas: { Order: order },
  operations: [
    {
      method: 'get',
      path: '/v1/orders/:id',
      operationId: 'getOrder',
      summary: 'one order',
      params: z.strictObject({ id: z.string() }),
      responses: { 200: { description: 'o', body: order }, 404: problem },
    },
    {
      method: 'get',
      path: '/v1/orders/latest',
      operationId: 'latest',
      summary: 'the latest order',
      responses: {
        200: {
          description: 'o',
          body: order,
          headers: { 'Consistency-Token': { description: 't', required: true } },
        },
      },
    },
    {
      method: 'delete',
      path: '/v1/orders/:id',
      operationId: 'forget',
      summary: 'forget one',
      params: z.strictObject({ id: z.string() }),
      responses: { 204: { description: 'gone' } },
    },
  ],
});

const id = '0190b6a0-0000-7000-8000-000000000000';
const json = { 'content-type': 'application/json; charset=utf-8' };
const { check } = openApiResponses(document);

describe('openApiResponses', () => {
  it('passes a response the document describes, its $ref resolved', () => {
    expect(
      check({
        method: 'GET',
        url: `/v1/orders/${id}?x=1`,
        status: 200,
        headers: json,
        body: JSON.stringify({ id, status: 'PENDING' }),
      }),
    ).toEqual([]);
    expect(check({ method: 'DELETE', url: `/v1/orders/${id}`, status: 204, headers: {}, body: '' })).toEqual(
      [],
    );
    expect(
      check({
        method: 'GET',
        url: `/v1/orders/${id}`,
        status: 404,
        headers: { 'content-type': 'application/problem+json' },
        body: '{"code":"KEEL_NOT_FOUND"}',
      }),
    ).toEqual([]);
  });

  it('names each departure: the body’s fields, an undocumented status, content type or operation', () => {
    expect(
      check({
        method: 'GET',
        url: `/v1/orders/${id}`,
        status: 200,
        headers: json,
        body: JSON.stringify({ id: 'x', status: 'LOST', extra: 1 }),
      }),
    ).toEqual([
      'GET /v1/orders/{id} 200: body must NOT have additional properties',
      'GET /v1/orders/{id} 200: body/id must match the pattern of its schema',
      'GET /v1/orders/{id} 200: body/id must match format "uuid"',
      'GET /v1/orders/{id} 200: body/status must be equal to one of the allowed values',
    ]);
    expect(check({ method: 'GET', url: `/v1/orders/${id}`, status: 500, headers: json, body: '{}' })).toEqual(
      ['GET /v1/orders/{id} 500: status not documented (documented: 200, 404)'],
    );
    expect(
      check({ method: 'GET', url: `/v1/orders/${id}`, status: 404, headers: json, body: '{"code":"x"}' }),
    ).toEqual([
      'GET /v1/orders/{id} 404: content type application/json (documented: application/problem+json)',
    ]);
    expect(
      check({ method: 'GET', url: `/v1/orders/${id}`, status: 200, headers: json, body: 'not json' }),
    ).toEqual(['GET /v1/orders/{id} 200: the body is not JSON']);
    expect(check({ method: 'DELETE', url: `/v1/orders/${id}`, status: 204, headers: {}, body: 'x' })).toEqual(
      ['DELETE /v1/orders/{id} 204: a body where the document describes none'],
    );
    expect(check({ method: 'POST', url: '/v1/orders', status: 202, headers: json, body: '{}' })).toEqual([
      'POST /v1/orders: no such operation',
    ]);
  });

  it('matches a literal path before a template, and holds it to its required headers', () => {
    const body = JSON.stringify({ id, status: 'CONFIRMED' });
    expect(check({ method: 'GET', url: '/v1/orders/latest', status: 200, headers: json, body })).toEqual([
      'GET /v1/orders/latest 200: required header Consistency-Token missing',
    ]);
    expect(
      check({
        method: 'GET',
        url: '/v1/orders/latest',
        status: 200,
        headers: { ...json, 'consistency-token': '0/1' },
        body,
      }),
    ).toEqual([]);
  });
});
