import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../errors/index.ts';
import { RedisScript, type RedisScriptClient } from '../resilience/redis-script.ts';
import { systemClock, type Clock } from '../time/index.ts';
import type { BeginOutcome, BeginRequest, IdempotencyStore, StoredResponse } from './idempotency-store.ts';

export interface RedisIdempotencyStoreOptions {
  /** An ioredis client (or anything with the same `eval`, `evalsha`, `del`). */
  client: RedisScriptClient;
  /** Prepended to every key. Default 'keel:idempotency:'. */
  prefix?: string;
  clock?: Clock;
}

// One hash per key. Times come from the caller's clock, so every instance judges expiry the
// same way the PostgreSQL store does; PEXPIRE only lets Redis forget a key once nobody could
// replay it any more.
const beginScript = new RedisScript(`
local now = tonumber(ARGV[1])
local fingerprint = ARGV[2]
local lockMs = tonumber(ARGV[4])
local ttlMs = tonumber(ARGV[5])
local e = redis.call('HMGET', KEYS[1], 'f', 'l', 'e', 'r')
if e[1] and tonumber(e[3]) > now then
  if e[1] ~= fingerprint then return {'mismatch'} end
  if e[4] then return {'replay', e[4]} end
  if tonumber(e[2]) > now then return {'in-flight'} end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'f', fingerprint, 't', ARGV[3], 'l', now + lockMs, 'e', now + ttlMs)
redis.call('PEXPIRE', KEYS[1], ttlMs)
return {'started'}
`);

// Acts only for the holder of the token: a request whose lock ran out and was taken over
// must not overwrite or delete its successor's key. A completed key is never released.
const completeScript = new RedisScript(`
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'r', ARGV[2])
  return 1
end
return 0
`);

const releaseScript = new RedisScript(`
if redis.call('HGET', KEYS[1], 't') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'r') == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0
`);

/** Idempotency keys in Redis: one hash per (scope, key), each step one atomic script. */
export class RedisIdempotencyStore implements IdempotencyStore {
  readonly #client: RedisScriptClient;
  readonly #prefix: string;
  readonly #clock: Clock;

  constructor(options: RedisIdempotencyStoreOptions) {
    if (typeof options?.client?.evalsha !== 'function')
      throw new InvalidArgumentError('client', 'an ioredis client', options?.client);
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'keel:idempotency:';
    this.#clock = options.clock ?? systemClock;
  }

  async begin(request: BeginRequest): Promise<BeginOutcome> {
    const token = randomUUID();
    const result = (await beginScript.run(
      this.#client,
      [this.#key(request.scope, request.key)],
      [this.#clock.now(), request.fingerprint, token, request.lockMs, request.ttlMs],
    )) as [string, string?];
    switch (result[0]) {
      case 'started':
        return { kind: 'started', token };
      case 'replay':
        return { kind: 'replay', response: JSON.parse(result[1] ?? 'null') as StoredResponse };
      case 'mismatch':
        return { kind: 'mismatch' };
      default:
        return { kind: 'in-flight' };
    }
  }

  async complete(scope: string, key: string, token: string, response: StoredResponse): Promise<void> {
    await completeScript.run(this.#client, [this.#key(scope, key)], [token, JSON.stringify(response)]);
  }

  async release(scope: string, key: string, token: string): Promise<void> {
    await releaseScript.run(this.#client, [this.#key(scope, key)], [token]);
  }

  #key(scope: string, key: string): string {
    // The scope holds spaces and slashes; a NUL cannot occur in a header, so it cannot collide.
    return `${this.#prefix}${scope}\u0000${key}`;
  }
}
