import type { FastifyError, FastifyInstance } from 'fastify';
import { KeelError, problemContentType, toProblemDetails } from '../../../../src/errors/index.ts';
import { isIdempotencyClaimRefused } from '../../../../src/idempotency/index.ts';

/**
 * Every error leaves as RFC 9457 problem+json. Fastify's own body errors are mapped to keel
 * codes so a client sees one vocabulary; anything unexpected is logged and answered as
 * KEEL_INTERNAL without its message.
 */
export function installProblemHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    const keelError = error instanceof KeelError ? error : fromFastify(error as FastifyError);
    const problem = toProblemDetails(keelError ?? error, request.url);
    // A refused claim of the Idempotency-Key is a replay (or a 409/422) the idempotency plugin
    // answers from the key in place of this problem: not a failure.
    if (isIdempotencyClaimRefused(error)) request.log.debug('idempotency key taken: answered from the key');
    else if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    return reply.status(problem.status).type(problemContentType).send(problem);
  });
  app.setNotFoundHandler((request, reply) => {
    const problem = toProblemDetails(
      new KeelError(
        'KEEL_ROUTE_NOT_FOUND',
        `no route for ${request.method} ${request.url.split('?')[0] ?? ''}`,
      ),
      request.url,
    );
    return reply.status(404).type(problemContentType).send(problem);
  });
}

function fromFastify(error: FastifyError): KeelError | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new KeelError('KEEL_PAYLOAD_TOO_LARGE', `request body is larger than the limit of this route`, {
        cause: error,
      });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new KeelError('KEEL_UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json', {
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
  if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
    return new KeelError('KEEL_MALFORMED_BODY', `request body is not valid JSON: ${error.message}`, {
      cause: error,
    });
  }
  return undefined;
}
