import type { FastifyReply } from 'fastify';
import { problemContentType, toProblemDetails } from '../../../../src/errors/index.ts';
import { retryAfterOf } from '../../../../src/resilience/index.ts';

/**
 * Answers with `error` as RFC 9457 problem+json (`toProblemDetails`: a client is told only what is
 * about its request). `status` is for a route that answers otherwise than the error's code does
 * (503 from a process that is not ready, whose code is KEEL_SERVICE_STATE): the body then says
 * the same status as the response, as RFC 9457 asks of its `status` member.
 *
 * A 429 or 503 whose error asks for a delay (a numeric `retryAfterMs`: a rate limiter's, an open
 * breaker's, a shutdown's) says it in `Retry-After`, in whole seconds rounded up, at least 1. It is
 * the one place the header is set, so a client learns the delay even where the code's details
 * are withheld from it (KEEL_BROKEN_CIRCUIT's).
 */
export function replyWithProblem(reply: FastifyReply, error: unknown, status?: number): FastifyReply {
  const problem = toProblemDetails(error, reply.request.url);
  if (status !== undefined) problem.status = status;
  const retryAfterMs = retryAfterOf(error);
  if (retryAfterMs !== undefined && (problem.status === 429 || problem.status === 503))
    void reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
  return reply.status(problem.status).type(problemContentType).send(problem);
}
