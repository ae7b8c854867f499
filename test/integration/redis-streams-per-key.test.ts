// Per-key ordering on Redis Streams (`ordering: 'per-key'`), against a real server at
// 127.0.0.1:6379 (fails naming it when unreachable); keys and connections removed after each test.
import { afterEach, describe, expect, it } from 'vitest';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import type { RedisStreamsSource } from '../../src/messaging/adapters/redis/redis-streams-source.ts';
import { RedisTestBrokers, requireRedis } from '../../src/messaging/adapters/redis/redis-test-server.ts';

await requireRedis();

const brokers = new RedisTestBrokers();
const sources: RedisStreamsSource[] = [];
afterEach(async () => {
  for (const source of sources.splice(0)) await source.close();
  await brokers.cleanup();
});

function messages(count: number, key: string | null = null): Envelope[] {
  return Array.from({ length: count }, (_, n) => createEnvelope({ type: 'job.run.v1', key, payload: { n } }));
}

async function opened(source: RedisStreamsSource): Promise<RedisStreamsSource> {
  sources.push(source);
  await source.open(() => undefined);
  return source;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('RedisStreamsBroker: per-key ordering', () => {
  it('holds a key’s later messages until its holder is acknowledged or dead-lettered, across retries and takeovers', async () => {
    const broker = brokers.open({ ordering: 'per-key' });
    expect(broker.capabilities.ordering).toBe('per-key');
    const [a1, a2, a3] = messages(3, 'a');
    const [b1] = messages(1, 'b');
    const [free] = messages(1);
    await broker.publish('jobs', [a1!, a2!, b1!, a3!, free!]);
    // A claim takes over whatever has been idle for longer than the claimer's lease. Only the
    // consumer standing in for the one that dies has a short lease, and it claims once: the
    // others' claims take nothing over however slowly this test runs (it was flaky under load
    // when every consumer had 100 ms and a later claim took b1 and free over again).
    const one = await opened(broker.source('jobs'));
    const first = await one.claim(10);
    expect(first.map((d) => d.envelope.id)).toEqual([a1!.id, b1!.id, free!.id]);
    // a1 fails: a2 still waits, through the retry.
    await one.retry(first[0]!, 0, new Error('boom'));
    const again = await one.claim(10);
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ attempt: 2, envelope: { id: a1!.id } });
    // The consumer dies holding a1 (and b1, free); once they have been idle longer than its
    // lease, another takes them over, a1 first (the retry stream), still before a2.
    await pause(150);
    const two = await opened(broker.source('jobs', { leaseMs: 100 }));
    const takenOver = await two.claim(10);
    expect(takenOver.map((d) => [d.envelope.id, d.attempt])).toEqual([
      [a1!.id, 3],
      [b1!.id, 2],
      [free!.id, 2],
    ]);
    const three = await opened(broker.source('jobs'));
    expect(await three.claim(10)).toEqual([]);
    await two.ack([takenOver[0]!]);
    const [next] = await three.claim(10);
    expect(next?.envelope.id).toBe(a2!.id);
    await three.deadLetter(next!, new Error('dead'));
    const [last] = await three.claim(10);
    expect(last?.envelope.id).toBe(a3!.id);
    await three.ack([last!]);
    expect(await three.claim(10)).toEqual([]);
    expect(await broker.client.hgetall(`${broker.streamKey('jobs')}:key-locks:keel`)).toEqual({ b: b1!.id });
  });

  it('keeps every key in publish order under concurrency and failures', async () => {
    const broker = brokers.open({ ordering: 'per-key' });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    const sent = Array.from({ length: 1000 }, (_, n) =>
      createEnvelope({ type: 'job.run.v1', key: keys[n % keys.length]!, payload: { n } }),
    );
    const seen = new Map<string, number[]>();
    const failed = new Set<string>();
    let done = 0;
    let finish: (() => void) | undefined;
    const all = new Promise<void>((resolve) => (finish = resolve));
    const consumer = broker.consumer(
      'jobs',
      async (message) => {
        const n = (message.payload as { n: number }).n;
        if (n % 7 === 0 && !failed.has(message.id)) {
          failed.add(message.id);
          throw new Error('once');
        }
        seen.set(message.key!, [...(seen.get(message.key!) ?? []), n]);
        if (++done === sent.length) finish?.();
      },
      { concurrency: 16, retryDelay: () => 5, pollIntervalMs: 20 },
    );
    await consumer.start();
    for (let i = 0; i < sent.length; i += 100) await broker.publish('jobs', sent.slice(i, i + 100));
    await all;
    await consumer.stop();
    for (const key of keys) {
      const expected = sent.filter((m) => m.key === key).map((m) => m.payload.n);
      expect(seen.get(key), key).toEqual(expected);
    }
  });

  it('repairKeyLocks frees a key whose holder vanished (its pending entry trimmed) and leaves live locks alone', async () => {
    const broker = brokers.open({ ordering: 'per-key' });
    const [a1, a2] = messages(2, 'a');
    const [b1, b2] = messages(2, 'b');
    await broker.publish('jobs', [a1!, b1!, a2!, b2!]);
    const source = await opened(broker.source('jobs'));
    const held = await source.claim(10);
    expect(held.map((d) => d.envelope.id)).toEqual([a1!.id, b1!.id]);
    await source.retry(held[1]!, 60_000, new Error('b1 waits for its retry'));
    await broker.client.xdel(broker.streamKey('jobs'), held[0]!.entryId); // as trimming would
    expect(await source.claim(10)).toEqual([]);
    expect(await broker.repairKeyLocks('jobs')).toBe(1);
    const [next] = await source.claim(10);
    expect(next?.envelope.id).toBe(a2!.id);
    expect(await broker.repairKeyLocks('jobs')).toBe(0);
  });
});
