import type { FastifyReply } from 'fastify';
import { problemContentType, toProblemDetails } from '../../../../src/errors/index.ts';

/**
 * Answers with `error` as RFC 9457 problem+json (`toProblemDetails`: a client is told only what is
 * about its request). `status` is for a route that answers otherwise than the error's code does
 * (503 from a process that is not ready, whose code is KEEL_SERVICE_STATE): the body then says
 * the same status as the response, as RFC 9457 asks of its `status` member.
 */
export function replyWithProblem(reply: FastifyReply, error: unknown, status?: number): FastifyReply {
  const problem = toProblemDetails(error, reply.request.url);
  if (status !== undefined) problem.status = status;
  return reply.status(problem.status).type(problemContentType).send(problem);
}
