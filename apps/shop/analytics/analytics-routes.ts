import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../src/db/index.ts';
import { analyticsQuery } from '../contracts/analytics.ts';
import { parseRequest } from '../transport/http/parse.ts';
import { orderAnalytics } from './order-analytics-store.ts';
import type { OrderStream } from './order-stream.ts';

export interface AnalyticsRoutesOptions {
  db: Db;
  /** Where the order stream lives. Default: keel's PostgreSQL stream in `db`. */
  stream?: OrderStream;
}

/**
 * `GET /v1/analytics/orders`: the orders read model built from the order stream. Eventually
 * consistent: `stream.lag` says how many events the model has still to apply.
 */
export async function analyticsRoutes(
  app: FastifyInstance,
  { db, stream }: AnalyticsRoutesOptions,
): Promise<void> {
  app.get('/v1/analytics/orders', async (request) => {
    const { top } = parseRequest(analyticsQuery, request.query ?? {}, 'query');
    return orderAnalytics(db, top, stream);
  });
}
