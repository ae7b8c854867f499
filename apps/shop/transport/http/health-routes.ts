import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import { problemContentType, toProblemDetails, KeelError } from '../../../../src/errors/index.ts';

export interface HealthRoutesOptions {
  db: Db;
  /** True once every part of the process has started and until it starts draining. */
  isReady: () => boolean;
}

/**
 * `/healthz`: the process is alive (restart it if not). `/readyz`: it can take traffic now
 * (route around it if not): started, not draining, and its database answers.
 */
export async function healthRoutes(
  app: FastifyInstance,
  { db, isReady }: HealthRoutesOptions,
): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (request, reply) => {
    if (!isReady()) {
      const problem = toProblemDetails(
        new KeelError('KEEL_SERVICE_STATE', 'not ready: starting or draining'),
        request.url,
      );
      return reply.status(503).type(problemContentType).send(problem);
    }
    try {
      await db.query('SELECT 1');
    } catch (error) {
      const problem = toProblemDetails(
        new KeelError('KEEL_DB_UNAVAILABLE', 'not ready: the database does not answer', { cause: error }),
        request.url,
      );
      return reply.status(503).type(problemContentType).send(problem);
    }
    return { status: 'ready' };
  });
}
