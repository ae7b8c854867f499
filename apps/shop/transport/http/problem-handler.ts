import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  AbortedError,
  KeelError,
  ValidationError,
  errorCodes,
  messageIsPublic,
} from '../../../../src/errors/index.ts';
import { isIdempotencyClaimRefused } from '../../../../src/idempotency/index.ts';
import { replyWithProblem } from './problem-reply.ts';

/**
 * Every error leaves as RFC 9457 problem+json. Fastify's own refusals of a request are mapped to
 * keel codes so a client sees one vocabulary; anything unexpected is answered as KEEL_INTERNAL
 * without its message. What a client is not told — an unexpected error, or the message and
 * details of one that describes the server (KEEL_DB_UNAVAILABLE names the database's address) —
 * is logged, so operators see it all.
 */
export function installProblemHandler(app: FastifyInstance): void {
  app.setErrorHandler(answerWithProblem);
  app.setNotFoundHandler((request, reply) =>
    replyWithProblem(
      reply,
      new KeelError(
        'KEEL_ROUTE_NOT_FOUND',
        `no route for ${request.method} ${request.url.split('?')[0] ?? ''}`,
      ),
    ),
  );
}

/**
 * The problem handler itself: fastify's error handler, and its `frameworkErrors` handler for what
 * it refuses before routing (a URL it cannot decode), which otherwise gets a JSON body of fastify's.
 */
export function answerWithProblem(
  error: FastifyError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const answered =
    error instanceof KeelError ? error : (fromFastify(error as FastifyError, request) ?? error);
  const code = answered instanceof KeelError ? answered.code : 'KEEL_INTERNAL';
  // A refused claim of the Idempotency-Key is a replay (or a 409/422) the idempotency plugin
  // answers from the key in place of this problem: not a failure. The plugin answers it before
  // this handler on the routes declared after it; this is for any declared before.
  if (isIdempotencyClaimRefused(error)) request.log.debug('idempotency key taken: answered from the key');
  else if (errorCodes[code].status >= 500) request.log.error({ err: error }, 'request failed');
  // A 4xx whose message the client is not told (a lost lease, a client gone mid-body).
  else if (!messageIsPublic(code)) request.log.warn({ err: error }, 'request failed');
  return replyWithProblem(reply, answered);
}

function fromFastify(error: FastifyError, request: FastifyRequest): KeelError | undefined {
  switch (error.code) {
    case 'FST_ERR_BAD_URL':
      return new ValidationError(
        'request URL',
        [{ path: '', message: 'its path has a %-escape that is malformed or not UTF-8' }],
        { cause: error },
      );
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new ValidationError(
        'request URL',
        [
          {
            path: '',
            message: `a path parameter is longer than ${request.server.initialConfig.maxParamLength} characters`,
          },
        ],
        { cause: error },
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new KeelError('KEEL_PAYLOAD_TOO_LARGE', `request body is larger than the limit of this route`, {
        cause: error,
      });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new KeelError('KEEL_UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json', {
        cause: error,
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new KeelError('KEEL_MALFORMED_BODY', 'request body is not as long as its Content-Length says', {
        cause: error,
      });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new KeelError('KEEL_MALFORMED_BODY', 'request body is empty; expected a JSON document', {
        cause: error,
      });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new KeelError('KEEL_MALFORMED_BODY', `request body is not valid JSON: ${error.message}`, {
        cause: error,
      });
  }
  // Fastify reports the request stream's own error — the client went away before its body had
  // arrived, ECONNRESET "aborted" — as a 400: no failure of the server, and no one to answer.
  if (error === request.raw.errored) return new AbortedError('request body', error);
  return undefined;
}
