import http from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyBaseLogger } from 'fastify';
import {
  KeelError,
  ValidationError,
  problemContentType,
  toProblemDetails,
} from '../../../../src/errors/index.ts';

/** A socket of node's HTTP server: `_httpMessage` is the response it is writing, if any (node's own check). */
type ServerSocket = Socket & { _httpMessage?: { headersSent: boolean } | null };

/**
 * Fastify's `clientErrorHandler`: answers what node's HTTP server refuses before fastify sees a
 * request — bytes that are not HTTP/1.1 (400), a request line and headers past `maxHeaderSize`
 * (431), chunk extensions past node's limit (413), a request not in by its `headersTimeout` or
 * `requestTimeout` (408) — as a problem+json of keel's codes, where fastify's default answers a
 * JSON body of its own. No request was read, so the problem has no `instance`.
 *
 * As node's and fastify's handlers do, it writes only to a socket that still takes bytes, with
 * `Connection: close`, then destroys the socket: the parser cannot go on after an error. It writes
 * nothing once a response has begun on the connection (its bytes would corrupt that one), nor to a
 * connection the client reset.
 */
export function clientErrorHandler(
  logger: FastifyBaseLogger,
): (error: ConnectionError, socket: Socket) => void {
  return (error, socket) => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    // A client's fault, and most often a scanner's or a proxy's: no failure of the server.
    logger.debug({ err: error }, 'request refused before routing');
    const responding = (socket as ServerSocket)._httpMessage?.headersSent === true;
    if (socket.writable && !responding) socket.write(rawProblemResponse(refusalOf(error)));
    socket.destroy(error);
  };
}

function refusalOf(error: ConnectionError): KeelError {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new KeelError(
        'KEEL_REQUEST_TIMEOUT',
        'the request did not arrive in full in time; send it again on a new connection',
        { cause: error },
      );
    case 'HPE_HEADER_OVERFLOW':
      // The app sets no maxHeaderSize of its own: node's, or its --max-http-header-size, holds.
      return new KeelError(
        'KEEL_HEADERS_TOO_LARGE',
        `request line and headers are larger than the limit of ${http.maxHeaderSize} bytes`,
        { cause: error },
      );
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new KeelError(
        'KEEL_PAYLOAD_TOO_LARGE',
        'request body has chunk extensions larger than the server reads',
        { cause: error },
      );
  }
  // llhttp's reason names what it could not parse ("Invalid header token"); the message of any
  // other error of the socket is about the server, not the request.
  const reason = (error as { reason?: unknown }).reason;
  const told = error.code.startsWith('HPE_') && typeof reason === 'string' ? `: ${reason}` : '';
  return new ValidationError(
    'request',
    [{ path: '', message: `it is not an HTTP/1.1 request the server can read${told}` }],
    { cause: error },
  );
}

/** The whole HTTP/1.1 response of `error`'s problem, as fastify's replyWithProblem would send it. */
function rawProblemResponse(error: KeelError): string {
  const problem = toProblemDetails(error);
  const body = JSON.stringify(problem);
  return [
    `HTTP/1.1 ${problem.status} ${http.STATUS_CODES[problem.status] ?? ''}`,
    `Content-Type: ${problemContentType}; charset=utf-8`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    '',
    body,
  ].join('\r\n');
}
