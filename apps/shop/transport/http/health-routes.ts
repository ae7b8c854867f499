import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import { KeelError } from '../../../../src/errors/index.ts';
import { healthReport, type ServiceHealth } from '../../../../src/service/index.ts';
import { replyWithProblem } from './problem-reply.ts';

export interface HealthRoutesOptions {
  db: Db;
  /** True once every part of the process has started and until it starts draining. */
  isReady: () => boolean;
  /** The health of the process's parts (`ServiceGroup.healthOfParts`), listed by `/readyz`. */
  parts?: () => Readonly<Record<string, ServiceHealth>>;
}

/**
 * `/healthz`: the process is alive (restart it if not). `/readyz`: it can take traffic now
 * (route around it if not): started, not draining, and its database answers. With `parts` it
 * lists each part's health and says `degraded` while one is failing — still 200: a relay or a
 * worker that lost its broker is no reason to route requests away from the api beside it (the
 * orders go into the outbox); the `keel.service.health` gauge is what to alert on.
 */
export async function healthRoutes(
  app: FastifyInstance,
  { db, isReady, parts }: HealthRoutesOptions,
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
    if (parts === undefined) return { status: 'ready' };
    const health = Object.entries(parts());
    const failing = health.some(([, part]) => part.status !== 'ok');
    return {
      status: failing ? 'degraded' : 'ready',
      parts: Object.fromEntries(health.map(([name, part]) => [name, healthReport(part)])),
    };
  });
}
