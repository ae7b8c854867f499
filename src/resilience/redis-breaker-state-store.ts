import { InvalidArgumentError } from '../errors/index.ts';
import type { BreakerStateStore, CompareAndSetResult, StoredBreakerState } from './breaker-state-store.ts';
import type { CircuitState } from './circuit-state.ts';
import { RedisScript, type RedisScriptClient } from './redis-script.ts';

export interface RedisBreakerStateStoreOptions {
  /** An ioredis client (or anything with the same `eval`, `evalsha`, `del`). */
  client: RedisScriptClient;
  /** Prepended to every key. Default 'keel:breaker:'. */
  prefix?: string;
}

// One hash per breaker: version and state. Compare-and-set is one script, so two processes
// deciding at once cannot both win.
const casScript = new RedisScript(`
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then
  return {0, version, redis.call('HGET', KEYS[1], 'state') or ''}
end
redis.call('HSET', KEYS[1], 'version', version + 1, 'state', ARGV[2])
return {1, version + 1, ARGV[2]}
`);

const loadScript = new RedisScript(`
return {tonumber(redis.call('HGET', KEYS[1], 'version') or '0'), redis.call('HGET', KEYS[1], 'state') or ''}
`);

/** Breaker state shared through Redis. */
export class RedisBreakerStateStore implements BreakerStateStore {
  readonly #client: RedisScriptClient;
  readonly #prefix: string;

  constructor(options: RedisBreakerStateStoreOptions) {
    if (typeof options?.client?.evalsha !== 'function')
      throw new InvalidArgumentError('client', 'an ioredis client', options?.client);
    this.#client = options.client;
    this.#prefix = options.prefix ?? 'keel:breaker:';
  }

  async load(key: string): Promise<StoredBreakerState | undefined> {
    const [version, state] = (await loadScript.run(this.#client, [this.#prefix + key], [])) as [
      number,
      string,
    ];
    return version === 0 ? undefined : { version, state: JSON.parse(state) as CircuitState };
  }

  async compareAndSet(
    key: string,
    expectedVersion: number,
    state: CircuitState,
  ): Promise<CompareAndSetResult> {
    const reply = (await casScript.run(
      this.#client,
      [this.#prefix + key],
      [expectedVersion, JSON.stringify(state)],
    )) as [number, number, string];
    const [saved, version, json] = reply;
    const current: CircuitState =
      json === '' ? { status: 'closed', since: 0 } : (JSON.parse(json) as CircuitState);
    return { saved: saved === 1, record: { version, state: current } };
  }

  async delete(key: string): Promise<void> {
    await this.#client.del(this.#prefix + key);
  }
}
