import type { FastifyReply } from 'fastify';
import { KeelError, problemContentType, toProblemDetails } from '../errors/index.ts';
import type { BeginOutcome, StoredResponse } from './idempotency-store.ts';

const replayHeader = 'idempotent-replayed';

/**
 * Headers a replay does not repeat: they belong to the connection or the moment of sending
 * (hop-by-hop headers, `date`, a `content-length` the replay computes for its own body), identify
 * the first request rather than its result (request and trace ids), or hand out credentials to
 * whoever presents the key (`set-cookie`). Every other header the handler set — `etag`,
 * `cache-control`, `link`, an application's own — describes the result and is replayed, as
 * Stripe replays the whole response.
 */
const notReplayed = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'content-length',
  'date',
  'set-cookie',
  'request-id',
  'x-request-id',
  'traceparent',
  'tracestate',
  'server-timing',
  'idempotent-replayed',
]);

/** The headers a reply carries now, to tell later which ones the handler set. */
export function headersNow(reply: FastifyReply): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) headers[name.toLowerCase()] = headerText(value);
  return headers;
}

/**
 * The response to keep for replay, or undefined for one that must release the key: a 5xx, a
 * 400 or a 429 (the request never started to act, or was told to come back later: a replay of
 * that answer would refuse every retry until the key expired), and a streamed body, which
 * cannot be kept. Headers the reply had already (`before`, set by hooks ahead of the handler:
 * CORS, rate-limit counts) are left out: those hooks set them afresh on the replay.
 */
export function storableResponse(
  reply: FastifyReply,
  payload: unknown,
  before: Record<string, string> = {},
): StoredResponse | undefined {
  const status = reply.statusCode;
  if (status >= 500 || status === 400 || status === 429) return undefined;
  let body: string;
  let bodyEncoding: 'base64' | undefined;
  if (typeof payload === 'string') body = payload;
  // No body at all (a 204): nothing to replay but the status and headers.
  else if (payload === undefined || payload === null) body = '';
  else if (payload instanceof Uint8Array) {
    body = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('base64');
    bodyEncoding = 'base64';
  } else return undefined;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(headersNow(reply)))
    if (!notReplayed.has(name) && before[name] !== value) headers[name] = value;
  return bodyEncoding === undefined ? { status, headers, body } : { status, headers, body, bodyEncoding };
}

/**
 * Sends a response as stored (status, headers, body): the first answer to a request whose
 * response `completeIdempotentRequest` stored, exactly as a replay will send it.
 */
export function sendStoredResponse(reply: FastifyReply, response: StoredResponse): FastifyReply {
  const body = response.bodyEncoding === 'base64' ? Buffer.from(response.body, 'base64') : response.body;
  return reply.status(response.status).headers(response.headers).send(body);
}

function headerText(value: number | string | readonly string[]): string {
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** What a request gets instead of running: the stored response, or why it may not run now. */
export function answerTo(outcome: Exclude<BeginOutcome, { kind: 'started' }>, url: string): StoredResponse {
  switch (outcome.kind) {
    case 'replay':
      return { ...outcome.response, headers: { ...outcome.response.headers, [replayHeader]: 'true' } };
    case 'in-flight':
      // One second is a guess a client can act on; the holder's remaining lock time would leak timing.
      return problem(
        new KeelError(
          'KEEL_IDEMPOTENCY_IN_FLIGHT',
          'a request with this Idempotency-Key is still being processed; retry later',
        ),
        url,
        { 'retry-after': '1' },
      );
    case 'mismatch':
      return problem(
        new KeelError('KEEL_IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request'),
        url,
      );
  }
}

export function problem(error: KeelError, url: string, headers: Record<string, string> = {}): StoredResponse {
  return {
    status: error.status,
    headers: { ...headers, 'content-type': problemContentType },
    body: JSON.stringify(toProblemDetails(error, url)),
  };
}
