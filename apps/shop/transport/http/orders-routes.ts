import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import {
  ConsistencyToken,
  consistencyTokenHeader,
  tokenAfterCommit,
  type ReadYourWritesDb,
} from '../../../../src/consistency/index.ts';
import { KeelError, NotFoundError } from '../../../../src/errors/index.ts';
import {
  claimIdempotentRequest,
  completeIdempotentRequest,
  installIdempotency,
  sendStoredResponse,
  type IdempotencyStore,
  type StoredResponse,
} from '../../../../src/idempotency/index.ts';
import { headerNames } from '../../../../src/messaging/index.ts';
import type { OutboxWriter } from '../../../../src/outbox/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { placeOrder } from '../../application/orders.ts';
import { ordersAcceptingFlag } from '../../flags.ts';
import { orderIdParams, placeOrderRequest } from '../../contracts/orders.ts';
import { findOrder } from '../../storage/orders-store.ts';
import { parseRequest } from './parse.ts';

export interface OrdersRoutesOptions {
  db: Db;
  /** Where `GET` reads: the replica once it has replayed a request's token, else the primary. */
  reads: ReadYourWritesDb;
  clock: Clock;
  /** Keys of `POST /v1/orders`; in the shop's database, so a key's response commits with its order. */
  idempotency: IdempotencyStore;
  /** Where an order's event is written in its transaction. Default: the table outbox. */
  outbox?: OutboxWriter;
  /** Whether new orders are taken now (the `orders.accepting` flag); default always. */
  accepting?: () => boolean;
}

/** Orders are small documents; anything larger is a mistake or an attack. */
const orderBodyLimit = 64 * 1024;

const jsonType = 'application/json; charset=utf-8';

export async function ordersRoutes(
  app: FastifyInstance,
  { db, reads, clock, idempotency, outbox, accepting = () => true }: OrdersRoutesOptions,
): Promise<void> {
  // A client that retries after a timeout must not place a second order: POST requires a key,
  // claimed in the order's own transaction and stored with it (one transaction per order).
  installIdempotency(app, { store: idempotency, clock, methods: ['POST'], claim: 'in-transaction' });

  // Read-your-writes: every accepted POST, first answer or replay, carries a token taken after
  // its order committed (a replay's order committed earlier still), so a GET that sends it back
  // never reads a replica that has not replayed the order yet.
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.method === 'POST' && reply.statusCode < 300 && !reply.hasHeader(consistencyTokenHeader))
      void reply.header(consistencyTokenHeader, (await reads.token()).toString());
    return payload;
  });

  app.post('/v1/orders', { bodyLimit: orderBodyLimit }, async (request, reply) => {
    if (!accepting()) {
      // Before the key is claimed: a 503 leaves it free for the client's retry after the pause.
      throw new KeelError(
        'KEEL_FEATURE_OFF',
        `new orders are paused: the flag ${ordersAcceptingFlag} is off`,
        {
          details: { flag: ordersAcceptingFlag },
        },
      );
    }
    const body = parseRequest(placeOrderRequest, request.body, 'request body');
    const correlation = request.headers['x-correlation-id'];
    const headers = {
      [headerNames.correlationId]: typeof correlation === 'string' ? correlation : request.id,
    };
    // The response stored with the key, sent as a replay of this key will send it.
    let answer: StoredResponse | undefined;
    let token: Promise<ConsistencyToken> | undefined;
    await placeOrder(
      db,
      clock,
      body,
      headers,
      {
        first: (tx) => claimIdempotentRequest(request, tx),
        last: async (tx, placed) => {
          answer = await completeIdempotentRequest(request, tx, {
            status: 202,
            headers: { 'content-type': jsonType, location: `/v1/orders/${placed.id}` },
            body: JSON.stringify(placed),
          });
          // Read with the commit, on its connection: no round trip of its own.
          token = tokenAfterCommit(tx, db);
        },
      },
      outbox,
    );
    if (token !== undefined) void reply.header(consistencyTokenHeader, (await token).toString());
    if (answer === undefined) throw new KeelError('KEEL_INTERNAL', 'the order committed without its answer');
    return sendStoredResponse(reply, answer);
  });

  app.get('/v1/orders/:id', async (request) => {
    const { id } = parseRequest(orderIdParams, request.params, 'path');
    // A malformed token is a 400 naming the header (KEEL_BAD_CONSISTENCY_TOKEN).
    const token = ConsistencyToken.fromHeader(request.headers[consistencyTokenHeader.toLowerCase()]);
    const order = await reads.read((replicaOrPrimary) => findOrder(replicaOrPrimary, id), { token });
    if (order === undefined) throw new NotFoundError('order', id);
    return order;
  });
}
