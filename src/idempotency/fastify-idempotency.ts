import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AbortedError, InvalidArgumentError, KeelError } from '../errors/index.ts';
import type { Queryable } from '../db/db.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { waitWhileInFlight } from './wait-while-in-flight.ts';
import {
  canClaimInTransaction,
  claimRefusedSqlState,
  isTransactionalStore,
  type BeginOutcome,
  type ClaimingIdempotencyStore,
  type BeginRequest,
  type IdempotencyStore,
  type StoredResponse,
} from './idempotency-store.ts';
import { fingerprintOf } from './request-fingerprint.ts';
import { answerTo, headersNow, problem, sendStoredResponse, storableResponse } from './stored-response.ts';

export { sendStoredResponse };

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
  /**
   * Where the key is claimed: 'before-handler' (the default) by the store, in a statement of its
   * own, before the handler runs; or 'in-transaction' by the handler, as the first statement of
   * its own transaction (`claimIdempotentRequest`), with the response stored last in it
   * (`completeIdempotentRequest`). In-transaction claims need a store in the database
   * (PostgresIdempotencyStore) and save a transaction and a round trip per request; a key in
   * flight is then an advisory lock, let go the moment its holder's transaction ends or its
   * process dies (no `lockMs` wait). The handler's code before its first awaited statement runs
   * even for a key that turns out to be taken (that transaction then fails and the plugin
   * answers as usual): do nothing outside the database before it.
   */
  claim?: 'before-handler' | 'in-transaction';
  /**
   * Paces the waits of `inFlight: { waitMs }` for a key in flight. Expiry of keys and locks is
   * judged by the store, on the clock the store was given: a test moving time passes the same
   * clock to both.
   */
  clock?: Clock;
}

const headerName = 'idempotency-key';
const keyPattern = /^[\x21-\x7e]{1,255}$/;

interface Held {
  store: IdempotencyStore;
  request: BeginRequest;
  token: string;
  /**
   * 'started': claimed by the store before the handler; 'pending': to be claimed in the
   * handler's transaction; 'claimed': claimIdempotentRequest sent that claim.
   */
  phase: 'started' | 'pending' | 'claimed';
  done: boolean;
  /** The response committed with the handler's writes (completeIdempotentRequest). */
  storedInTransaction?: boolean;
  /** What the handler failed with, if it did: a refused in-transaction claim is answered here. */
  error?: unknown;
  /** The reply's headers before the handler ran: hooks ahead of it set them again on a replay. */
  headersBefore: Record<string, string>;
}

const held = new WeakMap<FastifyRequest, Held>();

/**
 * Idempotency keys with Stripe's semantics, as hooks on the routes of the fastify context it is
 * installed in:
 *
 * - the first request with a key runs; its response (status, headers, body) is stored;
 * - a retry with the same key and the same request gets the stored response, with
 *   `Idempotent-Replayed: true`;
 * - the same key with a different request (method, path, query or body) gets 422;
 * - a request whose key is still held by a running request gets 409;
 * - a 5xx, a 400 (the request never started to act) or a 429 releases the key so a retry runs
 *   again.
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
  const claimInTransaction = (options.claim ?? 'before-handler') === 'in-transaction';
  if (options.claim !== undefined && options.claim !== 'before-handler' && !claimInTransaction)
    throw new InvalidArgumentError('claim', "'before-handler' or 'in-transaction'", options.claim);
  if (claimInTransaction && !canClaimInTransaction(store))
    throw new InvalidArgumentError(
      'store',
      "a store that claims in the handler's transaction (PostgresIdempotencyStore) for claim: 'in-transaction'",
      store,
    );
  if (inFlight !== 'reject' && !(Number.isFinite(inFlight.waitMs) && inFlight.waitMs >= 0))
    throw new InvalidArgumentError('inFlight.waitMs', 'a number of ms >= 0', inFlight.waitMs);
  /** `look()` — a claim, or a look at a key without one — waiting while the key is in flight, by option. */
  const lookOrWait = async <T extends BeginOutcome>(
    look: () => Promise<T>,
    response: ServerResponse,
  ): Promise<T | { kind: 'in-flight' }> => {
    if (inFlight === 'reject') return look();
    // Only a request that may wait needs to hear that its client went away. The response's
    // 'close', not the request's: a request closes as soon as its body is read, which would end
    // every wait at once; its response closes unsent only when the connection does.
    const aborted = new AbortController();
    const abort = (): void => aborted.abort();
    if (response.socket?.destroyed === true) abort();
    else response.once('close', abort);
    const wait = { waitMs: inFlight.waitMs, pollMs: inFlight.pollMs ?? 50, clock, signal: aborted.signal };
    try {
      return await waitWhileInFlight(look, wait);
    } catch (error) {
      // The client went away while waiting: nobody reads the answer; the key is still held.
      if (error instanceof AbortedError) return { kind: 'in-flight' } as const;
      throw error;
    } finally {
      response.removeListener('close', abort);
    }
  };

  app.addHook('preHandler', async (request, reply) => {
    if (!methods.has(request.method)) return;
    const raw = request.headers[headerName];
    const key = Array.isArray(raw) ? raw[0] : raw;
    if (key === undefined) {
      if (!required) return;
      return sendStoredResponse(
        reply,
        problem(
          new KeelError('KEEL_IDEMPOTENCY_KEY_REQUIRED', 'this request needs an Idempotency-Key header'),
          request.url,
        ),
      );
    }
    if (!keyPattern.test(key)) {
      return sendStoredResponse(
        reply,
        problem(
          new KeelError(
            'KEEL_IDEMPOTENCY_KEY_REQUIRED',
            'Idempotency-Key must be 1 to 255 printable ASCII characters',
          ),
          request.url,
        ),
      );
    }
    const route = request.routeOptions.url ?? request.url;
    const scope = `${tenant(request)} ${request.method} ${route}`;
    const fingerprint = fingerprintOf(request);
    const begin: BeginRequest = { scope, key, fingerprint, ttlMs, lockMs };
    if (claimInTransaction) {
      held.set(request, {
        store,
        request: begin,
        token: randomUUID(),
        phase: 'pending',
        done: false,
        headersBefore: headersNow(reply),
      });
      return;
    }
    const outcome = await lookOrWait(() => store.begin(begin), reply.raw);
    if (outcome.kind === 'started') {
      held.set(request, {
        store,
        request: begin,
        token: outcome.token,
        phase: 'started',
        done: false,
        headersBefore: headersNow(reply),
      });
      return;
    }
    return sendStoredResponse(reply, answerTo(outcome, request.url));
  });

  /**
   * A handler failed because its transaction's claim of the key was refused: answers from the
   * key (the stored response, the 409 or the 422). Anything else is the handler's own failure.
   */
  const answerRefusedClaim = async (
    error: unknown,
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<FastifyReply> => {
    const state = held.get(request);
    const claiming = state !== undefined && canClaimInTransaction(state.store) ? state.store : undefined;
    if (state?.phase !== 'claimed' || claiming === undefined || !isIdempotencyClaimRefused(error))
      throw error;
    return sendStoredResponse(reply, await whatTheKeyHolds(state, claiming, request, reply));
  };

  /** The answer to a request whose claim was refused: what its key holds, read, never written. */
  const whatTheKeyHolds = async (
    state: Held,
    claiming: ClaimingIdempotencyStore,
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<StoredResponse> => {
    // Only a look: a row written here would make the holder's own insert of the key fail.
    state.done = true;
    const outcome = await lookOrWait(() => claiming.lookup(state.request), reply.raw);
    return answerTo(outcome, request.url);
  };

  if (claimInTransaction) {
    // The refusal is answered where the handler's promise rejects, before fastify's error
    // handling: an application's error handler and fastify's logger never see it as a failed
    // request (a 500, until the plugin rewrote its answer in onSend).
    app.addHook('onRoute', (route) => {
      const routeMethods = Array.isArray(route.method) ? route.method : [route.method];
      if (!routeMethods.some((method: string) => methods.has(method.toUpperCase()))) return;
      const handler = route.handler;
      route.handler = function (this: FastifyInstance, request, reply) {
        const result: unknown = handler.call(this, request, reply);
        // A handler that answers through reply.send() without a promise is left as it is.
        if (!isPromiseLike(result)) return result;
        return Promise.resolve(result).catch((error: unknown) => answerRefusedClaim(error, request, reply));
      };
    });
  }

  // Routes declared before the plugin was installed are not wrapped: their refusal is answered
  // after the error handler's, in onSend.
  app.addHook('onError', async (request, _reply, error) => {
    const state = held.get(request);
    if (state !== undefined) state.error = error;
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const state = held.get(request);
    if (state === undefined) return payload;
    const claiming = canClaimInTransaction(state.store) ? state.store : undefined;
    if (state.phase === 'claimed' && claiming !== undefined && isIdempotencyClaimRefused(state.error)) {
      // The handler's transaction could not claim the key: answer with what the key holds.
      const answer = await whatTheKeyHolds(state, claiming, request, reply);
      void reply.status(answer.status).headers(answer.headers);
      return answer.body;
    }
    if (state.phase !== 'started' && !state.done && claiming !== undefined)
      return storeAfterTheFact(claiming, state, request, reply, payload);
    // Stored in the handler's transaction, yet the request failed after all: if that transaction
    // rolled back the key has no response and must go; the token guards a committed one too.
    if (state.storedInTransaction && reply.statusCode >= 500) {
      await store.release(state.request.scope, state.request.key, state.token);
      return payload;
    }
    if (state.done) return payload;
    state.done = true;
    const response = storableResponse(reply, payload, state.headersBefore);
    if (response === undefined) await store.release(state.request.scope, state.request.key, state.token);
    else await store.complete(state.request.scope, state.request.key, state.token, response);
    return payload;
  });

  /**
   * A response the handler's transaction did not store (an answer before its claim, or a claim
   * never completed): stored now, if the key is free, so that a later claim of the key replays it.
   */
  const storeAfterTheFact = async (
    claiming: ClaimingIdempotencyStore,
    state: Held,
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
  ): Promise<unknown> => {
    state.done = true;
    const response = storableResponse(reply, payload, state.headersBefore);
    if (response === undefined) return payload;
    if (state.phase === 'pending' && response.status < 300)
      request.log.warn(
        { route: state.request.scope },
        "idempotency: this route answered without claimIdempotentRequest in its transaction (claim: 'in-transaction'), so its key protected nothing",
      );
    // Only while nobody holds the key: a row written under a running claim would fail its commit.
    await claiming.storeIfUnclaimed(state.request, state.token, response);
    return payload;
  };

  // An in-transaction claim ends with its transaction: nothing is left to let go. Not hooked
  // then, as an onRequestAbort hook costs every request a listener on its socket.
  if (claimInTransaction) return;
  // A request that never sent a response (the client went away mid-handler) must not hold its key.
  const releaseUnfinished = async (request: FastifyRequest): Promise<void> => {
    const state = held.get(request);
    if (state === undefined || state.done || state.phase !== 'started') return;
    state.done = true;
    await store.release(state.request.scope, state.request.key, state.token);
  };
  app.addHook('onResponse', releaseUnfinished);
  app.addHook('onRequestAbort', releaseUnfinished);
}

/**
 * Claims the request's idempotency key in the handler's own transaction, with
 * `installIdempotency(app, { claim: 'in-transaction' })`: call it first in that transaction,
 * and `completeIdempotentRequest` last. A key that is taken (completed, in flight, or used for
 * another request) fails the transaction, and the plugin answers the replay, 409 or 422 instead
 * of the handler's error. In a keel `Tx` the claim is sent without waiting and is settled by the
 * next awaited statement or the commit: do nothing outside the database before then. With the
 * default claim (before the handler) it does nothing, so a handler can be written for both.
 */
export async function claimIdempotentRequest(request: FastifyRequest, tx: Queryable): Promise<void> {
  const state = held.get(request);
  if (state === undefined || state.phase === 'started') return;
  if (state.phase === 'claimed')
    throw new KeelError('KEEL_SERVICE_STATE', 'claimIdempotentRequest was called twice for one request');
  if (!canClaimInTransaction(state.store)) return; // the plugin refused such a store at install
  state.phase = 'claimed';
  await state.store.claimWithin(tx, state.request);
}

/**
 * Stores the response of the request that holds an idempotency key in the handler's own
 * transaction, so the key's response commits with the handler's writes: after a crash between
 * the commit and the reply, the client's retry gets this response instead of running again.
 * Call it last in the transaction, with exactly what the handler then sends: it resolves with
 * `response`, for `sendStoredResponse(reply, response)` after the commit, so that a replay and the
 * first answer cannot differ. A request without a key (not required, or another method) is left
 * alone.
 */
export async function completeIdempotentRequest(
  request: FastifyRequest,
  tx: Queryable,
  response: StoredResponse,
): Promise<StoredResponse> {
  const state = held.get(request);
  if (state === undefined || state.done) return response;
  if (!isTransactionalStore(state.store))
    throw new InvalidArgumentError(
      'store',
      'an idempotency store in the database (PostgresIdempotencyStore)',
      state.store,
    );
  if (state.phase === 'claimed' && canClaimInTransaction(state.store))
    await state.store.completeClaimWithin(tx, state.request, state.token, response);
  else if (state.phase === 'started')
    await state.store.completeWithin(tx, state.request.scope, state.request.key, state.token, response);
  // 'pending': the handler never claimed the key; the response is stored after it answers.
  else return response;
  // onSend must not store again; if the transaction rolls back, the error path releases the key.
  state.done = true;
  state.storedInTransaction = true;
  return response;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * The handler failed only because its transaction's claim of the Idempotency-Key was refused
 * (SQLSTATE KI409 from `keel_idempotency_claim`): the key is taken. The plugin answers from the
 * key (the stored response, 409 while it runs, 422 for another request) before fastify's error
 * handling on routes declared after it was installed; an error handler of a route declared
 * before sees the error first, and should not log it as a failure.
 */
export function isIdempotencyClaimRefused(error: unknown): boolean {
  for (let cause = error; cause instanceof Error; cause = cause.cause)
    if ((cause as { code?: unknown }).code === claimRefusedSqlState) return true;
  return false;
}
