// Redis Streams: keel's RedisStreamsBroker beside ioredis used directly (XADD, XREADGROUP, XACK).
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisStreamsBroker } from '../../src/messaging/adapters/redis/index.ts';
import type { Pair, Side } from './pair.ts';

const host = process.env.KEEL_REDIS_HOST ?? '127.0.0.1';
const port = Number(process.env.KEEL_REDIS_PORT ?? 6379);
const concurrency = 64;
const prefetch = 256;

export const redisPair: Pair = {
  id: 'redis',
  title: 'Redis Streams',
  peer: 'ioredis',
  settings: [
    `server ${host}:${port}; durability as the server's appendonly / appendfsync say (the same for both)`,
    'publish: one pipeline of XADD per chunk (an entry per message, the same fields), done when Redis answered each',
    `consume: a consumer group; keel: concurrency ${concurrency}, prefetch ${prefetch}; raw: XREADGROUP COUNT ${concurrency + prefetch} then one XACK for the batch`,
    "acks: keel's is one script per batch that XACKs only what the consumer still holds (lease fence); raw's is a plain XACK",
  ],
  async open() {
    const keyPrefix = `keelbench:${randomBytes(3).toString('hex')}:`;
    const broker = new RedisStreamsBroker({ keyPrefix, redis: { host, port } });
    const redis = new Redis({ host, port, connectionName: 'raw-bench' });
    const key = (destination: string): string => `${keyPrefix}raw:${destination}`;
    const keel: Side = {
      publish: async (destination, messages, chunk) => {
        for (let i = 0; i < messages.length; i += chunk) {
          await broker.publish(destination, messages.slice(i, i + chunk));
        }
      },
      consume: async (destination, count, span) => {
        let acked = 0;
        let done: (() => void) | undefined;
        const all = new Promise<void>((resolve) => (done = resolve));
        const consumer = broker.consumer(destination, async () => span.first(), { concurrency, prefetch });
        // Marked when the last ack lands, as the raw loop marks after its last XACK: polling for
        // it every 2 ms (as `until` does) woke this side ~150 times a round and the raw side never.
        consumer.events.on('acked', ({ messages }) => {
          acked += messages.length;
          if (acked >= count) {
            span.done();
            done?.();
          }
        });
        await consumer.start();
        await withTimeout(all, 120_000, () => `keel redis consume: ${acked} of ${count} acked`);
        await consumer.stop({ drainMs: 1000 });
      },
    };
    const raw: Side = {
      publish: async (destination, messages, chunk) => {
        for (let i = 0; i < messages.length; i += chunk) {
          const pipeline = redis.pipeline();
          for (const m of messages.slice(i, i + chunk)) {
            pipeline.xadd(
              key(destination),
              '*',
              'id',
              m.id,
              'type',
              m.type,
              'key',
              m.key ?? '',
              'payload',
              JSON.stringify(m.payload),
              'headers',
              JSON.stringify(m.headers),
              'occurredAt',
              m.occurredAt,
            );
          }
          const results = await pipeline.exec();
          const failed = results?.find(([error]) => error !== null);
          if (failed) throw failed[0]!;
        }
      },
      consume: async (destination, count, span) => {
        // Reads the stream keel published to: same entries, same layout.
        const stream = broker.streamKey(destination);
        await redis.xgroup('CREATE', stream, 'raw', '0', 'MKSTREAM');
        let acked = 0;
        while (acked < count) {
          const reply = (await redis.xreadgroup(
            'GROUP',
            'raw',
            'c1',
            'COUNT',
            concurrency + prefetch,
            'BLOCK',
            1000,
            'STREAMS',
            stream,
            '>',
          )) as [string, [string, string[]][]][] | null;
          const entries = reply?.[0]?.[1] ?? [];
          for (const [, fields] of entries) {
            span.first();
            const at = fields.indexOf('payload');
            JSON.parse(fields[at + 1]!);
          }
          if (entries.length > 0) await redis.xack(stream, 'raw', ...entries.map(([id]) => id));
          acked += entries.length;
        }
        span.done();
      },
    };
    return {
      keel,
      raw,
      close: async () => {
        await broker.close();
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 500);
          cursor = next;
          if (keys.length > 0) await redis.del(...keys);
        } while (cursor !== '0');
        await redis.quit();
      },
    };
  },
};

/** `promise`, or a rejection naming what is missing after `ms`. */
async function withTimeout(promise: Promise<void>, ms: number, what: () => string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what()} after ${ms} ms`)), ms);
  });
  try {
    await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
