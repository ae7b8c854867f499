import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { InvalidArgumentError } from '../../../../src/errors/index.ts';
import { clientErrorHandler } from './client-error-handler.ts';
import { refuseRequestsWhileClosing } from './closing-refusal.ts';
import { answerWithProblem, installProblemHandler } from './problem-handler.ts';

/** How long a client may take to send a request. */
export interface HttpAppOptions {
  /**
   * Ms a client has, from a request's first byte, to send all of it: a request still arriving
   * then is answered 408 `KEEL_REQUEST_TIMEOUT` and its connection closed. 0 for no limit, but
   * node's `headersTimeout` on the headers (60 s). Default 0, fastify's.
   */
  requestTimeoutMs?: number;
  /**
   * Ms between node's checks of those limits, so a request may run over them by up to this much.
   * Default a tenth of `requestTimeoutMs`, from 1 s to 30 s (node's own default is 30 s, which
   * would let a 30 s limit run to a minute); 30 s without a request timeout.
   */
  timeoutCheckIntervalMs?: number;
}

/** A tenth of the limit, within 1–30 s: each check walks the open connections, so not too often. */
function defaultCheckInterval(requestTimeoutMs: number): number {
  if (requestTimeoutMs === 0) return 30_000;
  return Math.min(30_000, Math.max(1000, Math.ceil(requestTimeoutMs / 10)));
}

/**
 * A fastify app of the shop, before its routes, whose every error answer is problem+json: those
 * of its routes and hooks, the 404 of a path no route serves, and those fastify or node give on
 * their own — a URL it cannot decode, a request that comes while the app closes, a request node's
 * HTTP server cannot read (not HTTP, headers too large, too slow to arrive).
 */
export function createHttpApp(logger: FastifyBaseLogger, options: HttpAppOptions = {}): FastifyInstance {
  const { requestTimeoutMs = 0 } = options;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 0)
    throw new InvalidArgumentError('requestTimeoutMs', 'an integer >= 0', requestTimeoutMs);
  const timeoutCheckIntervalMs = options.timeoutCheckIntervalMs ?? defaultCheckInterval(requestTimeoutMs);
  if (!Number.isInteger(timeoutCheckIntervalMs) || timeoutCheckIntervalMs < 1)
    throw new InvalidArgumentError('timeoutCheckIntervalMs', 'an integer >= 1', timeoutCheckIntervalMs);
  const app = Fastify({
    loggerInstance: logger,
    // Per-request lines would bury the first screen; errors are still logged by the problem handler.
    logController: new LogController({ disableRequestLogging: true }),
    // What fastify refuses before routing (a malformed %-escape, an overlong path parameter) goes
    // here; without it fastify answers with a JSON body of its own.
    frameworkErrors: (error, request, reply) => void answerWithProblem(error, request, reply),
    // What node's HTTP server refuses before fastify sees a request (400, 408, 431) goes here;
    // fastify's default handler answers it with a JSON body of its own.
    clientErrorHandler: clientErrorHandler(logger),
    requestTimeout: requestTimeoutMs,
    http: { connectionsCheckingInterval: timeoutCheckIntervalMs },
    // Requests that come while the app closes are refused by refuseRequestsWhileClosing, as
    // problems; fastify's own 503 for them is plain JSON.
    return503OnClosing: false,
  });
  installProblemHandler(app);
  refuseRequestsWhileClosing(app);
  return app;
}
