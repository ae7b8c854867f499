import type { Queryable } from '../db/db.ts';

/** A response as stored for replay: what the first request answered. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** How `body` is written: absent for text, 'base64' for a body of bytes (a Buffer). */
  bodyEncoding?: 'base64';
}

/** What `begin` found for a key. */
export type BeginOutcome =
  /** First time (or the earlier holder's lock expired): run the request, then `complete` or `release`. */
  | { kind: 'started'; token: string }
  /** Already completed with the same request: answer with the stored response. */
  | { kind: 'replay'; response: StoredResponse }
  /** Another request with this key is still running. */
  | { kind: 'in-flight' }
  /** The key was used for a different request (another body, path or method). */
  | { kind: 'mismatch' };

export interface BeginRequest {
  /** Who the key belongs to and where it was used: tenant and route, so keys never collide across them. */
  scope: string;
  key: string;
  /** A hash of method, path, query and body: the same key with another request is refused. */
  fingerprint: string;
  /** How long a started request holds the key before another may take it over (it crashed). */
  lockMs: number;
  /** How long a completed response is kept for replay. */
  ttlMs: number;
}

/**
 * Server-side storage of idempotency keys. One conformance suite checks every implementation.
 *
 * Concurrency: `begin` is atomic per (scope, key): of concurrent callers exactly one gets
 * `started`. `complete` and `release` only act with the token `begin` returned, so a request
 * whose lock expired and was taken over cannot overwrite its successor.
 */
export interface IdempotencyStore {
  begin(request: BeginRequest): Promise<BeginOutcome>;
  /** Stores the response for replay until `ttlMs` after `begin`'s time. */
  complete(scope: string, key: string, token: string, response: StoredResponse): Promise<void>;
  /**
   * Forgets a started key (the request failed with a 5xx, or never answered): a retry runs
   * again. A completed key is kept: its effects committed, so a retry must replay them.
   */
  release(scope: string, key: string, token: string): Promise<void>;
}

/** A store in the application's database: the response can commit with the handler's writes. */
export interface TransactionalIdempotencyStore extends IdempotencyStore {
  completeWithin(
    tx: Queryable,
    scope: string,
    key: string,
    token: string,
    response: StoredResponse,
  ): Promise<void>;
}

/** SQLSTATE of a claim a handler's transaction could not make (keel_idempotency_claim). */
export const claimRefusedSqlState = 'KI409';

/**
 * A store that can claim a key in the handler's own transaction (`claim: 'in-transaction'`):
 * claim and response then commit or roll back with the handler's writes, in one transaction.
 */
export interface ClaimingIdempotencyStore extends TransactionalIdempotencyStore {
  claimWithin(tx: Queryable, request: BeginRequest): Promise<void>;
  /** What a key holds, without claiming it; a key nobody holds is 'in-flight' too. */
  lookup(request: BeginRequest): Promise<Exclude<BeginOutcome, { kind: 'started' }>>;
  /** Stores a response for a key no claim holds and no unexpired row has; whether it did. */
  storeIfUnclaimed(request: BeginRequest, token: string, response: StoredResponse): Promise<boolean>;
  completeClaimWithin(
    tx: Queryable,
    request: BeginRequest,
    token: string,
    response: StoredResponse,
  ): Promise<void>;
}

export function canClaimInTransaction(store: IdempotencyStore): store is ClaimingIdempotencyStore {
  return (
    isTransactionalStore(store) &&
    typeof (store as Partial<ClaimingIdempotencyStore>).claimWithin === 'function'
  );
}

export function isTransactionalStore(store: IdempotencyStore): store is TransactionalIdempotencyStore {
  return typeof (store as Partial<TransactionalIdempotencyStore>).completeWithin === 'function';
}
