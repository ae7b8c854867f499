import { InvalidArgumentError } from '../errors/index.ts';
import type { RateLimitStore, TakeRequest } from './rate-limit-store.ts';
import { RedisScript, type RedisScriptClient } from './redis-script.ts';
import type { TakeResult } from './token-bucket.ts';

export interface RedisRateLimitStoreOptions {
  /** An ioredis client (or anything with the same `eval`, `evalsha`, `del`). */
  client: RedisScriptClient;
  /** Prepended to every key. Default 'keel:bucket:'. */
  prefix?: string;
}

// refillAndTake (token-bucket.ts) in Lua, one atomic step per take. Times come from the
// caller; a bucket's time never moves back, so a caller with a slow clock mints nothing.
// The key expires once the bucket would be full again: forgetting it then changes nothing.
const takeScript = new RedisScript(`
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local need = tonumber(ARGV[3]) * 1000
local now = tonumber(ARGV[4])
local full = capacity * 1000
local milli = full
local at = now
local stored = redis.call('HMGET', KEYS[1], 'm', 't')
if stored[1] then
  milli = tonumber(stored[1])
  at = tonumber(stored[2])
end
if now > at then
  milli = math.min(full, milli + (now - at) * rate)
  at = now
end
local granted = 0
if milli >= need then
  milli = milli - need
  granted = 1
end
redis.call('HSET', KEYS[1], 'm', string.format('%.17g', milli), 't', string.format('%.17g', at))
if rate > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((full - milli) / rate) + 1000)
end
local retry = 0
if granted == 0 then
  if rate > 0 then retry = math.ceil((need - milli) / rate) else retry = -1 end
end
return {granted, math.floor(milli / 1000), retry}
`);

/** Token buckets shared through Redis: one hash per key, one script per take. */
export class RedisRateLimitStore implements RateLimitStore {
  readonly #client: RedisScriptClient;
  readonly #prefix: string;

  constructor(options: RedisRateLimitStoreOptions) {
    if (typeof options?.client?.evalsha !== 'function')
      throw new InvalidArgumentError('client', 'an ioredis client', options?.client);
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'keel:bucket:';
  }

  async take(key: string, request: TakeRequest): Promise<TakeResult> {
    const { capacity, refillPerSecond, cost, now } = request;
    const reply = (await takeScript.run(
      this.#client,
      [this.#prefix + key],
      [capacity, refillPerSecond, cost, now],
    )) as [number, number, number];
    const [granted, remaining, retry] = reply;
    return { granted: granted === 1, remaining, retryAfterMs: retry < 0 ? Infinity : retry };
  }

  async delete(key: string): Promise<void> {
    await this.#client.del(this.#prefix + key);
  }
}
