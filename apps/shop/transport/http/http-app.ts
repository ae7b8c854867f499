import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { refuseRequestsWhileClosing } from './closing-refusal.ts';
import { answerWithProblem, installProblemHandler } from './problem-handler.ts';

/**
 * A fastify app of the shop, before its routes, whose every error answer is problem+json: those
 * of its routes and hooks, the 404 of a path no route serves, and those fastify gives on its own —
 * a URL it cannot decode, a request that comes while the app closes.
 */
export function createHttpApp(logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // Per-request lines would bury the first screen; errors are still logged by the problem handler.
    logController: new LogController({ disableRequestLogging: true }),
    // What fastify refuses before routing (a malformed %-escape, an overlong path parameter) goes
    // here; without it fastify answers with a JSON body of its own.
    frameworkErrors: (error, request, reply) => void answerWithProblem(error, request, reply),
    // Requests that come while the app closes are refused by refuseRequestsWhileClosing, as
    // problems; fastify's own 503 for them is plain JSON.
    return503OnClosing: false,
  });
  installProblemHandler(app);
  refuseRequestsWhileClosing(app);
  return app;
}
