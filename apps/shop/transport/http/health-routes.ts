import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import { KeelError } from '../../../../src/errors/index.ts';
import { replyWithProblem } from './problem-reply.ts';

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

  app.get('/readyz', async (_request, reply) => {
    if (!isReady()) {
      // 503, not the code's 500: a probe routes around a process that is starting or draining.
      return replyWithProblem(
        reply,
        new KeelError('KEEL_SERVICE_STATE', 'not ready: starting or draining'),
        503,
      );
    }
    try {
      await db.query('SELECT 1');
    } catch (error) {
      return replyWithProblem(
        reply,
        new KeelError('KEEL_DB_UNAVAILABLE', 'not ready: the database does not answer', { cause: error }),
      );
    }
    return { status: 'ready' };
  });
}
