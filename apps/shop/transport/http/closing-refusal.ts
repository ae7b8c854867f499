import type { FastifyInstance } from 'fastify';
import { KeelError } from '../../../../src/errors/index.ts';
import { replyWithProblem } from './problem-reply.ts';

/**
 * A request refused by a closing process. `retryAfterMs` is 1 s, its answer's `Retry-After`
 * (replyWithProblem): another process can take the request at once.
 */
class ShuttingDownError extends KeelError {
  readonly retryAfterMs = 1000;
  constructor() {
    super('KEEL_SHUTTING_DOWN', 'the server is shutting down; send the request again');
  }
}

/**
 * Once `app.close()` has begun, answers every new request with a 503 problem (KEEL_SHUTTING_DOWN,
 * `Retry-After`, `Connection: close`) before any other hook runs, so the request is not started
 * and its client retries elsewhere; requests already running finish. Such requests come on
 * keep-alive connections that were busy when the listener closed: close ends the idle ones.
 *
 * Needs fastify's `return503OnClosing: false`: with it on, fastify answers these requests first,
 * with a JSON body of its own.
 */
export function refuseRequestsWhileClosing(app: FastifyInstance): void {
  let closing = false;
  // preClose hooks run once fastify has begun closing, just before its listener stops.
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // A callback hook, not an async one: it runs before every request, and an async hook costs each
  // a promise. Answering from it, the hook does not call `done`: the request goes no further.
  app.addHook('onRequest', (_request, reply, done) => {
    if (!closing) return done();
    void reply.header('connection', 'close');
    replyWithProblem(reply, new ShuttingDownError());
  });
}
