import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Db } from '../../../src/db/index.ts';
import { parseRequest } from '../transport/http/parse.ts';
import { orderAnalytics } from './order-analytics-store.ts';

export interface AnalyticsRoutesOptions {
  db: Db;
}

const analyticsQuery = z.strictObject({
  /** How many customers, SKUs and cancellation reasons each list shows. */
  top: z.coerce.number().int().min(1).max(100).default(10),
});

/**
 * `GET /v1/analytics/orders`: the orders read model built from the order stream. Eventually
 * consistent: `stream.lag` says how many events the model has still to apply.
 */
export async function analyticsRoutes(app: FastifyInstance, { db }: AnalyticsRoutesOptions): Promise<void> {
  app.get('/v1/analytics/orders', async (request) => {
    const { top } = parseRequest(analyticsQuery, request.query ?? {}, 'query');
    return orderAnalytics(db, top);
  });
}
