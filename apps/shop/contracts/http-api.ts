import { z } from 'zod';
import {
  openApiDocument,
  problemContentType,
  problemDetailsSchema,
  type HttpHeaderContract,
  type HttpOperation,
  type HttpResponseContract,
  type OpenApiDocument,
} from '../../../src/contracts/index.ts';
import { accountIdParams, accountResource, signupRequest } from './accounts.ts';
import { analyticsQuery, orderAnalyticsResource } from './analytics.ts';
import { orderIdParams, orderResource, placeOrderRequest } from './orders.ts';
import { readinessResource } from './readiness.ts';

// The shop's HTTP contract: every operation it serves, with the zod schemas its handlers parse
// requests with and the resources it answers with. apps/shop/contracts/openapi.json is this
// document as published; `npm run contracts -- write` rewrites it after a deliberate change,
// and a test fails while the two differ, so an API change is always a reviewed diff.

const problem = (
  description: string,
  headers?: Record<string, HttpHeaderContract>,
): HttpResponseContract => ({
  description,
  contentType: problemContentType,
  body: problemDetailsSchema,
  ...(headers === undefined ? {} : { headers }),
});

const correlationId: HttpHeaderContract = {
  description: 'Carried into the events the request writes and its logs; default: the request id',
};

/** What any `/v1` operation may answer besides its own outcomes. */
const v1Failures = {
  401: problem('No live API key (`KEEL_UNAUTHENTICATED`), where the deployment requires keys', {
    'WWW-Authenticate': { description: '`Bearer realm="shop"`', required: true },
  }),
  429: problem('Past the client’s token bucket (`KEEL_RATE_LIMITED`)', {
    'Retry-After': { description: 'Seconds until a request will be let through', required: true },
  }),
  500: problem('The server failed (`KEEL_INTERNAL`): nothing about the cause is disclosed'),
  503: problem(
    'The database is unavailable (`KEEL_DB_UNAVAILABLE`), or the process is shutting down (`KEEL_SHUTTING_DOWN`, with `Retry-After`); retry with backoff',
  ),
} satisfies Record<number, HttpResponseContract>;

/** What a JSON body can be refused for before its schema is read. */
const bodyFailures = {
  400: problem(
    'The body failed its schema (`KEEL_VALIDATION_FAILED`, `errors` names each field) or is not JSON',
  ),
  413: problem('The body is larger than the operation’s limit (`KEEL_PAYLOAD_TOO_LARGE`)'),
  415: problem('The body is not `application/json` (`KEEL_UNSUPPORTED_MEDIA_TYPE`)'),
} satisfies Record<number, HttpResponseContract>;

const location: HttpHeaderContract = { description: 'The resource’s URL', required: true };

/** What an operation that touches nothing that can fail answers once the process is stopping. */
const shuttingDown = problem(
  'The process is shutting down (`KEEL_SHUTTING_DOWN`): a request on a connection still busy with another; send it again',
  { 'Retry-After': { description: 'Seconds to wait before retrying', required: true } },
);

export const shopOperations: readonly HttpOperation[] = [
  {
    method: 'post',
    path: '/v1/orders',
    operationId: 'placeOrder',
    summary: 'Place an order',
    description:
      'Writes the order (PENDING) and its `order.placed.v1` event in one transaction; a saga then reserves stock, charges and confirms or cancels it. A retry with the same Idempotency-Key gets the first answer again; the key is kept for 24 hours.',
    tags: ['orders'],
    headers: {
      'Idempotency-Key': {
        description: 'Unique per order the client means to place; printable ASCII',
        required: true,
        schema: z.string().regex(/^[\x21-\x7e]{1,255}$/),
      },
      'X-Correlation-Id': correlationId,
    },
    body: { schema: placeOrderRequest },
    responses: {
      202: {
        description: 'Accepted: the order is placed and its fulfilment will follow',
        body: orderResource,
        headers: {
          Location: location,
          'Consistency-Token': {
            description: 'Send it back on reads to see this order even from a replica (read-your-writes)',
            required: true,
          },
          'Idempotent-Replayed': {
            description: '`true` when this is the stored answer to an earlier request',
          },
        },
      },
      ...bodyFailures,
      400: problem(
        'The body failed its schema (`KEEL_VALIDATION_FAILED`), is not JSON, or the Idempotency-Key is missing or malformed (`KEEL_IDEMPOTENCY_KEY_REQUIRED`)',
      ),
      409: problem('A request with this Idempotency-Key is still running (`KEEL_IDEMPOTENCY_IN_FLIGHT`)', {
        'Retry-After': { description: 'Seconds to wait before retrying', required: true },
      }),
      422: problem('This Idempotency-Key was used for a different request (`KEEL_IDEMPOTENCY_KEY_REUSED`)'),
      ...v1Failures,
      503: problem(
        'New orders are paused by the `orders.accepting` flag (`KEEL_FEATURE_OFF`), the database is unavailable, or the process is shutting down; the key stays free for a retry',
      ),
    },
  },
  {
    method: 'get',
    path: '/v1/orders/:id',
    operationId: 'getOrder',
    summary: 'Read an order',
    tags: ['orders'],
    params: orderIdParams,
    headers: {
      'Consistency-Token': {
        description:
          'From a write’s answer: the read is served by a replica only once it has replayed that write, else by the primary',
      },
    },
    responses: {
      200: { description: 'The order', body: orderResource },
      400: problem(
        'The id is not a UUID, or the Consistency-Token is malformed (`KEEL_BAD_CONSISTENCY_TOKEN`)',
      ),
      404: problem('No such order (`KEEL_NOT_FOUND`)'),
      ...v1Failures,
    },
  },
  {
    method: 'post',
    path: '/v1/signups',
    operationId: 'signUp',
    summary: 'Create an account',
    description:
      'Writes the account and its `account.signed_up.v1` event in one transaction; the welcome mail follows. The email is the idempotency key: the same email and name again answer 200 with the same account.',
    tags: ['accounts'],
    headers: { 'X-Correlation-Id': correlationId },
    body: { schema: signupRequest },
    responses: {
      201: { description: 'The new account', body: accountResource, headers: { Location: location } },
      200: {
        description: 'This email and name signed up before: the same account',
        body: accountResource,
        headers: { Location: location },
      },
      409: problem('The email has an account under another name (`KEEL_ALREADY_EXISTS`)'),
      ...bodyFailures,
      ...v1Failures,
    },
  },
  {
    method: 'get',
    path: '/v1/accounts/:id',
    operationId: 'getAccount',
    summary: 'Read an account',
    tags: ['accounts'],
    params: accountIdParams,
    responses: {
      200: { description: 'The account', body: accountResource },
      400: problem('The id is not a UUID (`KEEL_VALIDATION_FAILED`)'),
      404: problem('No such account (`KEEL_NOT_FOUND`)'),
      ...v1Failures,
    },
  },
  {
    method: 'get',
    path: '/v1/analytics/orders',
    operationId: 'getOrderAnalytics',
    summary: 'Orders, revenue, customers and SKUs, from the order stream',
    description:
      'Eventually consistent: a read model the worker builds by applying the order stream; `stream.lag` says how many events it has still to apply.',
    tags: ['analytics'],
    query: analyticsQuery,
    responses: {
      200: { description: 'The read model now', body: orderAnalyticsResource },
      400: problem('`top` is not an integer from 1 to 100 (`KEEL_VALIDATION_FAILED`)'),
      ...v1Failures,
    },
  },
  {
    method: 'get',
    path: '/healthz',
    operationId: 'getLiveness',
    summary: 'Whether the process is alive (restart it if not)',
    tags: ['operations'],
    security: [],
    responses: {
      200: { description: 'Alive', body: z.object({ status: z.literal('ok') }) },
      503: shuttingDown,
    },
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'getReadiness',
    summary: 'Whether the process takes traffic now (route around it if not)',
    tags: ['operations'],
    security: [],
    responses: {
      200: {
        description:
          'Started, not draining, and its database answers; `parts` lists the health of each part (`degraded` while one does not reach its broker or database)',
        body: readinessResource,
      },
      503: problem(
        'Starting or draining (`KEEL_SERVICE_STATE`), the database does not answer (`KEEL_DB_UNAVAILABLE`), or the process is shutting down (`KEEL_SHUTTING_DOWN`, with `Retry-After`)',
      ),
    },
  },
  {
    method: 'get',
    path: '/openapi.json',
    operationId: 'getOpenApiDocument',
    summary: 'This document',
    tags: ['operations'],
    security: [],
    responses: {
      200: { description: 'The OpenAPI 3.1 document of this API', body: z.record(z.string(), z.unknown()) },
      503: shuttingDown,
    },
  },
];

/** The shop's API as an OpenAPI 3.1 document. */
export function shopOpenApiDocument(): OpenApiDocument {
  return openApiDocument({
    info: {
      title: 'keel shop',
      version: '1.0.0',
      description:
        'The reference system of keel. Errors are RFC 9457 problem+json with a stable `code` (keel’s docs/errors.md). Where the deployment requires API keys (KEEL_API_KEYS=required), every /v1 operation needs one.',
    },
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'An API key as `Authorization: Bearer <key>`' },
      apiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key' },
    },
    security: ['bearer', 'apiKey'],
    schemas: {
      Order: orderResource,
      Account: accountResource,
      OrderAnalytics: orderAnalyticsResource,
      Problem: problemDetailsSchema,
    },
    operations: shopOperations,
  });
}
