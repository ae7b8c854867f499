import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import { NotFoundError } from '../../../../src/errors/index.ts';
import { headerNames } from '../../../../src/messaging/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { placeOrder } from '../../application/orders.ts';
import { orderIdParams, placeOrderRequest } from '../../contracts/orders.ts';
import { findOrder } from '../../storage/orders-store.ts';
import { parseRequest } from './parse.ts';

export interface OrdersRoutesOptions {
  db: Db;
  clock: Clock;
}

/** Orders are small documents; anything larger is a mistake or an attack. */
const orderBodyLimit = 64 * 1024;

export async function ordersRoutes(app: FastifyInstance, { db, clock }: OrdersRoutesOptions): Promise<void> {
  app.post('/v1/orders', { bodyLimit: orderBodyLimit }, async (request, reply) => {
    const body = parseRequest(placeOrderRequest, request.body, 'request body');
    const correlation = request.headers['x-correlation-id'];
    const headers = {
      [headerNames.correlationId]: typeof correlation === 'string' ? correlation : request.id,
    };
    const order = await placeOrder(db, clock, body, headers);
    return reply.status(202).header('location', `/v1/orders/${order.id}`).send(order);
  });

  app.get('/v1/orders/:id', async (request) => {
    const { id } = parseRequest(orderIdParams, request.params, 'path');
    const order = await findOrder(db, id);
    if (order === undefined) throw new NotFoundError('order', id);
    return order;
  });
}
