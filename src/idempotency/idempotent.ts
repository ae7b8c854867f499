import { createHash } from 'node:crypto';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { waitWhileInFlight } from './wait-while-in-flight.ts';
import type { IdempotencyStore } from './idempotency-store.ts';

export interface IdempotentOptions {
  store: IdempotencyStore;
  /** What the keys belong to, e.g. 'payments.charge': the same key in two scopes never collides. */
  scope: string;
  /** How long a result is kept and replayed. Default 24 h. */
  ttlMs?: number;
  /** How long a running call holds its key before another may take over (it crashed). Default 60 s. */
  lockMs?: number;
  /**
   * How long a call whose key is held by one still running waits for that one's result before
   * it fails with KEEL_IDEMPOTENCY_IN_FLIGHT. Default 0: fail at once, so a message consumer
   * retries later through its own backoff instead of holding a slot.
   */
  waitMs?: number;
  pollMs?: number;
  clock?: Clock;
  /** Called when a result is replayed instead of run: for a metric or a span attribute. */
  onReplay?: (key: string) => void;
}

/** What the wrapped function gets: the key, to hand on to a downstream provider's own idempotency. */
export interface IdempotentContext {
  key: string;
  signal?: AbortSignal;
}

export type Idempotent = <T>(
  key: string,
  fn: (context: IdempotentContext) => Promise<T>,
  options?: { fingerprint?: string; signal?: AbortSignal },
) => Promise<T>;

/**
 * `idempotent(key, fn)` for consumers and outgoing calls: `fn` runs once per key; a later call
 * with the key gets the stored result (JSON) without running it. A call that throws releases
 * the key, so a retry runs again. A `fingerprint` (a hash of the request) makes reusing a key
 * for a different request fail with KEEL_IDEMPOTENCY_KEY_REUSED.
 *
 * Exactly-once holds for the effects `fn` makes through the key: a crash after `fn`'s effect
 * but before the result is stored runs `fn` again after `lockMs`, so the key should also be
 * handed on (`context.key`) to the provider, which then deduplicates the second call.
 */
export function createIdempotent(options: IdempotentOptions): Idempotent {
  const { store, scope } = options;
  if (typeof scope !== 'string' || scope.length === 0)
    throw new InvalidArgumentError('scope', 'a non-empty string', scope);
  const ttlMs = options.ttlMs ?? 24 * 3600 * 1000;
  const lockMs = options.lockMs ?? 60_000;
  const waitMs = options.waitMs ?? 0;
  const pollMs = options.pollMs ?? 50;
  for (const [field, value, min] of [
    ['ttlMs', ttlMs, 1],
    ['lockMs', lockMs, 1],
    ['waitMs', waitMs, 0],
    ['pollMs', pollMs, 1],
  ] as const) {
    if (!Number.isFinite(value) || value < min)
      throw new InvalidArgumentError(field, `a number of ms >= ${min}`, value);
  }
  const clock = options.clock ?? systemClock;

  return async (key, fn, call = {}) => {
    if (typeof key !== 'string' || key.length === 0 || key.length > 255)
      throw new InvalidArgumentError('key', 'a string of 1 to 255 characters', key);
    const fingerprint = call.fingerprint ?? '';
    const request = { scope, key, fingerprint, ttlMs, lockMs };
    const outcome = await waitWhileInFlight(() => store.begin(request), {
      waitMs,
      pollMs,
      clock,
      signal: call.signal,
    });
    switch (outcome.kind) {
      case 'replay':
        options.onReplay?.(key);
        return (JSON.parse(outcome.response.body) as { value: Awaited<ReturnType<typeof fn>> }).value;
      case 'in-flight':
        throw new KeelError(
          'KEEL_IDEMPOTENCY_IN_FLIGHT',
          `a call with key ${key} in ${scope} is still running`,
        );
      case 'mismatch':
        throw new KeelError(
          'KEEL_IDEMPOTENCY_KEY_REUSED',
          `key ${key} in ${scope} was already used for a different request`,
        );
      case 'started': {
        let value;
        try {
          value = await fn({ key, signal: call.signal });
        } catch (error) {
          await store.release(scope, key, outcome.token);
          throw error;
        }
        const body = JSON.stringify({ value });
        await store.complete(scope, key, outcome.token, { status: 200, headers: {}, body });
        return value;
      }
    }
  };
}

/**
 * A key derived from parts that identify one logical operation, e.g. (consumer, message id) or
 * (saga instance, step): the same parts always give the same key, of a length any provider takes.
 */
export function deriveIdempotencyKey(...parts: (string | number)[]): string {
  if (parts.length === 0) throw new InvalidArgumentError('parts', 'at least one part', parts);
  const hash = createHash('sha256');
  for (const part of parts) hash.update(`${String(part).length}:${String(part)}`);
  return hash.digest('base64url');
}
