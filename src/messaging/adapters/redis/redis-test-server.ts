// The Redis server the Redis Streams tests run against, and their isolation: a key prefix and a
// connection name per broker, so tests clean up and cut only their own keys and connections on
// a server that other suites share. Not part of the public door.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisStreamsBroker, type RedisStreamsBrokerOptions } from './redis-streams-broker.ts';

export const redisAddress = {
  host: process.env.REDIS_HOST ?? '127.0.0.1',
  port: Number(process.env.REDIS_PORT ?? 6379),
};
export const redisServer = `Redis at ${redisAddress.host}:${redisAddress.port}`;

/** Resolves when the server answers PING; otherwise fails naming it, in CI and locally alike. */
export async function requireRedis(): Promise<void> {
  const client = new Redis({
    ...redisAddress,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    await client.quit();
  } catch (error) {
    client.disconnect();
    throw new Error(
      `${redisServer} is not reachable (${(error as Error).message}); the Redis Streams tests need it: ` +
        'start one (deploy/docker-compose.yml) or point REDIS_HOST / REDIS_PORT at one',
    );
  }
}

/**
 * Brokers for one test file: each gets a key prefix and a connection name of its own; `cleanup`
 * closes them all, deletes their keys and checks that no connection of theirs is left open.
 */
export class RedisTestBrokers {
  readonly run = `keel-streams-test-${process.pid}-${randomBytes(3).toString('hex')}`;
  readonly #brokers: RedisStreamsBroker[] = [];
  readonly #prefixes: string[] = [];
  #admin: Redis | undefined;

  /** A connection for inspecting and cutting; closed by `cleanup`. */
  get admin(): Redis {
    if (this.#admin === undefined) {
      this.#admin = new Redis({
        ...redisAddress,
        connectionName: `${this.run}-admin`,
        maxRetriesPerRequest: 1,
      });
      this.#admin.on('error', () => undefined);
    }
    return this.#admin;
  }

  open(options: Omit<RedisStreamsBrokerOptions, 'client' | 'redis'> = {}): RedisStreamsBroker {
    const id = randomBytes(4).toString('hex');
    const keyPrefix = `keel:stream:${this.run}-${id}:`;
    this.#prefixes.push(keyPrefix);
    const broker = new RedisStreamsBroker({
      keyPrefix,
      ...options,
      redis: { ...redisAddress, connectionName: `${this.run}-${id}` },
    });
    this.#brokers.push(broker);
    return broker;
  }

  /**
   * Makes Redis see the entries a consumer holds as idle for `idleMs`, as if it had stalled that
   * long: XCLAIM to the same consumer with IDLE and JUSTID (no delivery counted, the holder
   * unchanged). A lease then runs out without the test waiting for it, so the tests of takeovers
   * need no real time, and a slow machine cannot run out a lease the test did not mean to.
   */
  async stall(
    broker: RedisStreamsBroker,
    holder: { readonly consumer: string },
    deliveries: readonly { readonly entryId: string; readonly fromRetry: boolean }[],
    options: { destination?: string; group?: string; idleMs?: number } = {},
  ): Promise<void> {
    const stream = broker.streamKey(options.destination ?? 'jobs');
    const group = options.group ?? 'keel';
    for (const delivery of deliveries) {
      const key = delivery.fromRetry ? `${stream}:retry:${group}` : stream;
      const idleMs = options.idleMs ?? 3_600_000;
      await this.admin.xclaim(key, group, holder.consumer, 0, delivery.entryId, 'IDLE', idleMs, 'JUSTID');
    }
  }

  /** Cuts every connection of this file's brokers (not the admin's), as a network fault would. */
  async cutConnections(): Promise<number> {
    const list = await this.admin.client('LIST');
    const victims = parseClientList(String(list)).filter(
      (c) => c.name.startsWith(this.run) && c.name !== `${this.run}-admin`,
    );
    for (const { id } of victims) await this.admin.client('KILL', 'ID', id);
    return victims.length;
  }

  /** Open connections named after this file's brokers (the admin's aside). */
  async openConnections(): Promise<string[]> {
    const list = await this.admin.client('LIST');
    return parseClientList(String(list))
      .map((c) => c.name)
      .filter((name) => name.startsWith(this.run) && name !== `${this.run}-admin`);
  }

  async cleanup(): Promise<void> {
    for (const broker of this.#brokers.splice(0)) await broker.close();
    if (this.#admin === undefined && this.#prefixes.length === 0) return;
    for (const prefix of this.#prefixes.splice(0)) await dropPrefix(this.admin, prefix);
    const admin = this.#admin;
    this.#admin = undefined;
    await admin?.quit();
  }
}

export async function dropPrefix(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await client.del(...keys);
  } while (cursor !== '0');
}

function parseClientList(text: string): { id: string; name: string }[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const fields = new Map(
        line.split(' ').map((pair) => {
          const at = pair.indexOf('=');
          return [pair.slice(0, at), pair.slice(at + 1)] as const;
        }),
      );
      return { id: fields.get('id') ?? '', name: fields.get('name') ?? '' };
    });
}
