import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  AbortedError,
  InvalidArgumentError,
  KeelError,
  problemContentType,
  toProblemDetails,
} from '../errors/index.ts';
import type { Queryable } from '../db/db.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { beginWaiting } from './begin-waiting.ts';
import {
  isTransactionalStore,
  type BeginOutcome,
  type BeginRequest,
  type IdempotencyStore,
  type StoredResponse,
} from './idempotency-store.ts';
import { requestFingerprint } from './request-fingerprint.ts';

export interface IdempotencyOptions {
  store: IdempotencyStore;
  /** Methods that take a key. Default POST and PATCH. */
  methods?: readonly string[];
  /** Answer 400 when a request of those methods has no key. Default true. */
  required?: boolean;
  /** The tenant a request acts for; keys are scoped per tenant and route. Default: one tenant. */
  tenant?: (request: FastifyRequest) => string;
  /** How long a completed response is replayed. Default 24 h. */
  ttlMs?: number;
  /** How long a running request holds its key before a retry may take over. Default 60 s. */
  lockMs?: number;
  /**
   * What a request does when its key is held by one still running: answer 409 at once
   * ('reject', the default, as Stripe does), or wait up to `waitMs` for the first one's
   * response and replay it, answering 409 only if it is still running then.
   */
  inFlight?: 'reject' | { waitMs: number; pollMs?: number };
  clock?: Clock;
}

const headerName = 'idempotency-key';
const replayHeader = 'idempotent-replayed';
const keyPattern = /^[\x21-\x7e]{1,255}$/;
/** Headers a replay repeats; others (dates, connection) belong to the transport, not the result. */
const replayedHeaders = ['content-type', 'location'];

interface Held {
  store: IdempotencyStore;
  scope: string;
  key: string;
  token: string;
  done: boolean;
  /** The response committed with the handler's writes (completeIdempotentRequest). */
  storedInTransaction?: boolean;
}

const held = new WeakMap<FastifyRequest, Held>();

/**
 * Idempotency keys with Stripe's semantics, as hooks on the routes of the fastify context it is
 * installed in:
 *
 * - the first request with a key runs; its response (status, headers, body) is stored;
 * - a retry with the same key and the same request gets the stored response, with
 *   `Idempotent-Replayed: true`;
 * - the same key with a different request (method, path or body) gets 422;
 * - a request whose key is still held by a running request gets 409;
 * - a 5xx, or a 400 (the request never started to act), releases the key so a retry runs again.
 *
 * Keys expire after `ttlMs`. A process that dies while holding a key lets it go after `lockMs`.
 */
export function installIdempotency(app: FastifyInstance, options: IdempotencyOptions): void {
  const methods = new Set((options.methods ?? ['POST', 'PATCH']).map((m) => m.toUpperCase()));
  const required = options.required ?? true;
  const ttlMs = options.ttlMs ?? 24 * 3600 * 1000;
  const lockMs = options.lockMs ?? 60_000;
  for (const [field, value] of [
    ['ttlMs', ttlMs],
    ['lockMs', lockMs],
  ] as const) {
    if (!Number.isFinite(value) || value <= 0)
      throw new InvalidArgumentError(field, 'a number of ms > 0', value);
  }
  const tenant = options.tenant ?? (() => 'default');
  const { store } = options;
  const clock = options.clock ?? systemClock;
  const inFlight = options.inFlight ?? 'reject';
  if (inFlight !== 'reject' && !(Number.isFinite(inFlight.waitMs) && inFlight.waitMs >= 0))
    throw new InvalidArgumentError('inFlight.waitMs', 'a number of ms >= 0', inFlight.waitMs);
  const beginOrWait = async (request: BeginRequest, raw: IncomingMessage): Promise<BeginOutcome> => {
    if (inFlight === 'reject') return store.begin(request);
    // Only a request that may wait needs to hear that its client went away.
    const aborted = new AbortController();
    raw.once('close', () => aborted.abort());
    const wait = { waitMs: inFlight.waitMs, pollMs: inFlight.pollMs ?? 50, clock, signal: aborted.signal };
    return beginWaiting(store, request, wait).catch((error: unknown) => {
      // The client went away while waiting: nobody reads the answer; the key is still held.
      if (error instanceof AbortedError) return { kind: 'in-flight' } as const;
      throw error;
    });
  };

  app.addHook('preHandler', async (request, reply) => {
    if (!methods.has(request.method)) return;
    const raw = request.headers[headerName];
    const key = Array.isArray(raw) ? raw[0] : raw;
    if (key === undefined) {
      if (!required) return;
      return problem(
        reply,
        request,
        new KeelError('KEEL_IDEMPOTENCY_KEY_REQUIRED', 'this request needs an Idempotency-Key header'),
      );
    }
    if (!keyPattern.test(key)) {
      return problem(
        reply,
        request,
        new KeelError(
          'KEEL_IDEMPOTENCY_KEY_REQUIRED',
          'Idempotency-Key must be 1 to 255 printable ASCII characters',
        ),
      );
    }
    const route = request.routeOptions.url ?? request.url;
    const scope = `${tenant(request)} ${request.method} ${route}`;
    const fingerprint = requestFingerprint(request.method, request.url.split('?')[0] ?? '', request.body);
    const outcome = await beginOrWait({ scope, key, fingerprint, ttlMs, lockMs }, request.raw);
    switch (outcome.kind) {
      case 'started':
        held.set(request, { store, scope, key, token: outcome.token, done: false });
        return;
      case 'replay':
        return replay(reply, outcome.response);
      case 'in-flight':
        // One second is a guess a client can act on; the holder's remaining lock time would leak timing.
        void reply.header('retry-after', '1');
        return problem(
          reply,
          request,
          new KeelError(
            'KEEL_IDEMPOTENCY_IN_FLIGHT',
            'a request with this Idempotency-Key is still being processed; retry later',
          ),
        );
      case 'mismatch':
        return problem(
          reply,
          request,
          new KeelError(
            'KEEL_IDEMPOTENCY_KEY_REUSED',
            'this Idempotency-Key was used for a different request',
          ),
        );
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const state = held.get(request);
    if (state === undefined) return payload;
    // Stored in the handler's transaction, yet the request failed after all: if that transaction
    // rolled back the key has no response and must go; the token guards a committed one too.
    if (state.storedInTransaction && reply.statusCode >= 500) {
      await store.release(state.scope, state.key, state.token);
      return payload;
    }
    if (state.done) return payload;
    state.done = true;
    const status = reply.statusCode;
    if (status >= 500 || status === 400 || typeof payload !== 'string') {
      await store.release(state.scope, state.key, state.token);
      return payload;
    }
    const headers: Record<string, string> = {};
    for (const name of replayedHeaders) {
      const value = reply.getHeader(name);
      if (value !== undefined) headers[name] = String(value);
    }
    await store.complete(state.scope, state.key, state.token, { status, headers, body: payload });
    return payload;
  });

  // A request that never sent a response (the client went away mid-handler) must not hold its key.
  const releaseUnfinished = async (request: FastifyRequest): Promise<void> => {
    const state = held.get(request);
    if (state === undefined || state.done) return;
    state.done = true;
    await store.release(state.scope, state.key, state.token);
  };
  app.addHook('onResponse', releaseUnfinished);
  app.addHook('onRequestAbort', releaseUnfinished);
}

/**
 * Stores the response of the request that holds an idempotency key in the handler's own
 * transaction, so the key's response commits with the handler's writes: after a crash between
 * the commit and the reply, the client's retry gets this response instead of running again.
 * Call it last in the transaction, with exactly what the handler then sends. A request without
 * a key (not required, or another method) is left alone.
 */
export async function completeIdempotentRequest(
  request: FastifyRequest,
  tx: Queryable,
  response: StoredResponse,
): Promise<void> {
  const state = held.get(request);
  if (state === undefined || state.done) return;
  if (!isTransactionalStore(state.store))
    throw new InvalidArgumentError(
      'store',
      'an idempotency store in the database (PostgresIdempotencyStore)',
      state.store,
    );
  await state.store.completeWithin(tx, state.scope, state.key, state.token, response);
  // onSend must not store again; if the transaction rolls back, the error path releases the key.
  state.done = true;
  state.storedInTransaction = true;
}

function replay(reply: FastifyReply, response: StoredResponse): FastifyReply {
  return reply
    .status(response.status)
    .headers(response.headers)
    .header(replayHeader, 'true')
    .send(response.body);
}

function problem(reply: FastifyReply, request: FastifyRequest, error: KeelError): FastifyReply {
  return reply.status(error.status).type(problemContentType).send(toProblemDetails(error, request.url));
}
