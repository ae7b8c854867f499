// The Redis Streams adapter's own behaviour, against a real server at 127.0.0.1:6379 (fails naming
// it when unreachable). Each broker has its own key prefix and connection name; both are removed
// after each test. Lease expiry runs on the server's clock, so those tests wait a few real
// milliseconds; delays run on the broker's clock, a ManualClock here.
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/errors/index.ts';
import { ManualClock } from '../../src/time/index.ts';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import { PublishError } from '../../src/messaging/publisher.ts';
import { RedisStreamsBroker } from '../../src/messaging/adapters/redis/redis-streams-broker.ts';
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
  return Array.from({ length: count }, (_, n) =>
    createEnvelope({ type: 'job.run.v1', key, payload: { n }, headers: { 'correlation-id': `c${n}` } }),
  );
}

async function opened(source: RedisStreamsSource): Promise<RedisStreamsSource> {
  sources.push(source);
  await source.open(() => undefined);
  return source;
}

async function entries(broker: RedisStreamsBroker, destination: string): Promise<Record<string, string>[]> {
  const page = await broker.client.xrange(broker.streamKey(destination), '-', '+');
  return page.map(([, fields]) => {
    const out: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
    return out;
  });
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('RedisStreamsBroker: publish and claim', () => {
  it('writes each envelope as one entry of plain fields and claims it back whole', async () => {
    const broker = brokers.open();
    const sent = createEnvelope({ type: 'a.b.v1', key: 'k', payload: { x: [1, 'y'] }, hlc: '1:2:n' });
    const bare = createEnvelope({ type: 'a.b.v1', payload: undefined });
    await broker.publish('jobs', [sent, bare]);
    const [first, second] = await entries(broker, 'jobs');
    expect(first).toEqual({
      id: sent.id,
      type: 'a.b.v1',
      key: 'k',
      payload: '{"x":[1,"y"]}',
      headers: '{}',
      occurredAt: sent.occurredAt,
      hlc: '1:2:n',
      attempt: '0',
    });
    expect(second).not.toHaveProperty('key');
    const source = await opened(broker.source('jobs'));
    const claimed = await source.claim(10);
    expect(claimed.map((d) => d.envelope)).toEqual([sent, { ...bare, payload: null }]);
    expect(claimed.map((d) => d.attempt)).toEqual([1, 1]);
    await source.ack(claimed);
    expect(await source.claim(10)).toEqual([]);
  });

  it('acknowledges concurrent acks together, each resolving once its batch is acknowledged', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(20));
    const source = await opened(broker.source('jobs'));
    const claimed = await source.claim(20);
    await Promise.all(claimed.map((d) => source.ack([d])));
    expect(await broker.stats('jobs')).toMatchObject({ groups: [{ pending: 0 }] });
  });

  it('claims at most max per call, in stream order', async () => {
    const broker = brokers.open();
    const sent = messages(7);
    await broker.publish('jobs', sent);
    const source = await opened(broker.source('jobs'));
    const got = [...(await source.claim(3)), ...(await source.claim(3)), ...(await source.claim(3))];
    expect(got.map((d) => d.envelope.id)).toEqual(sent.map((m) => m.id));
  });

  it('adds a publish larger than one script call in order: by count (100 a call) and by size', async () => {
    const broker = brokers.open();
    const many = messages(1234, 'k');
    await broker.publish('jobs', many);
    expect((await entries(broker, 'jobs')).map((e) => e.id)).toEqual(many.map((m) => m.id));

    // After the server forgot its scripts (a restart, SCRIPT FLUSH), a publish still goes out whole and in order.
    await broker.client.script('FLUSH');
    const after = messages(250, 'k');
    await broker.publish('again', after);
    expect((await entries(broker, 'again')).map((e) => e.id)).toEqual(after.map((m) => m.id));

    // ~1.5 MB each: three fit no call of 4 MB together, so they go in calls of two and one.
    const large = Array.from({ length: 3 }, (_, n) =>
      createEnvelope({ type: 'job.run.v1', key: null, payload: { n, blob: 'x'.repeat(1_500_000) } }),
    );
    await broker.publish('big', large);
    const added = await entries(broker, 'big');
    expect(added.map((e) => e.id)).toEqual(large.map((m) => m.id));
    expect(
      added.every(
        (e) => e.key === undefined && (JSON.parse(e.payload!) as { blob: string }).blob.length === 1_500_000,
      ),
    ).toBe(true);
  });

  it('keeps acknowledged entries in the stream (replay, other groups) until retention trims them', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(3));
    const source = await opened(broker.source('jobs'));
    await source.ack(await source.claim(3));
    expect(await broker.client.xlen(broker.streamKey('jobs'))).toBe(3);
    const stats = await broker.stats('jobs');
    expect(stats).toMatchObject({ length: 3, delayed: 0, groups: [{ name: 'keel', pending: 0, lag: 0 }] });

    const trimmed = brokers.open({ retention: { maxLength: 10 } });
    for (let i = 0; i < 30; i++) await trimmed.publish('jobs', messages(100));
    // Approximate trimming drops whole nodes (100 entries each by default), never below the bound.
    const length = await trimmed.client.xlen(trimmed.streamKey('jobs'));
    expect(length).toBeGreaterThanOrEqual(10);
    expect(length).toBeLessThan(300);
  });

  it('rejects with PublishError naming every message Redis refused', async () => {
    const broker = brokers.open();
    await broker.client.set(broker.streamKey('jobs'), 'not a stream');
    const sent = messages(3);
    const error = await broker.publish('jobs', sent).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect((error as PublishError).failedIds).toEqual(sent.map((m) => m.id));
    expect(String((error as PublishError).cause)).toMatch(/WRONGTYPE/);
  });

  it('fails at the boundary on bad names, options and payloads, and rejects publishing after close', async () => {
    const broker = brokers.open();
    await expect(broker.publish('no spaces', messages(1))).rejects.toThrow(InvalidArgumentError);
    await expect(broker.publish('jobs', messages(1), { availableAt: Number.NaN })).rejects.toThrow(
      /availableAt/,
    );
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const bad = createEnvelope({ type: 'a.v1', payload: circular });
    await expect(broker.publish('jobs', [messages(1)[0]!, bad])).rejects.toThrow(/messages\[1\]/);
    expect(await broker.client.exists(broker.streamKey('jobs'))).toBe(0);
    expect(() => broker.source('jobs', { leaseMs: 0 })).toThrow(/leaseMs/);
    expect(() => broker.source('jobs', { group: 'a b' })).toThrow(/group/);
    expect(() => brokers.open({ keyPrefix: 'x{' })).toThrow(/keyPrefix/);
    expect(() => brokers.open({ retention: { maxLength: 0 } })).toThrow(/retention.maxLength/);
    await broker.close();
    expect(() => broker.source('jobs')).toThrow(/closed/);
    const error = await broker.publish('jobs', messages(1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect(String((error as PublishError).cause)).toMatch(/closed/);
  });

  it('wakes a waiting consumer on publish, without waiting for its poll', async () => {
    const broker = brokers.open();
    const consumer = broker.consumer('jobs', async () => {}, { pollIntervalMs: 3_600_000 });
    await consumer.start();
    const acked = consumer.events.once('acked');
    await pause(50); // the first claim found nothing; the next poll is an hour away
    await broker.publish('jobs', messages(1));
    await acked;
    await consumer.stop();
  });

  it('wakes a waiting consumer on publish after its connections were cut: it subscribes again', async () => {
    const broker = brokers.open();
    const consumer = broker.consumer('jobs', async () => {}, { pollIntervalMs: 3_600_000 });
    await consumer.start();
    await pause(50);
    expect(await brokers.cutConnections()).toBeGreaterThanOrEqual(2);
    // The reconnect's own wake-up makes one claim, which finds nothing; then only a signal can.
    const deadline = Date.now() + 5000;
    while ((await brokers.openConnections()).length < 2 && Date.now() < deadline) await pause(20);
    await pause(200);
    const acked = consumer.events.once('acked');
    await broker.publish('jobs', messages(1));
    await acked;
    await consumer.stop();
  });
});

describe('RedisStreamsBroker: groups, leases and settling', () => {
  it('gives every group every message; consumers within a group share them', async () => {
    const broker = brokers.open();
    const a1 = await opened(broker.source('jobs', { group: 'a' }));
    const a2 = await opened(broker.source('jobs', { group: 'a' }));
    const b = await opened(broker.source('jobs', { group: 'b' }));
    const sent = messages(4);
    await broker.publish('jobs', sent);
    const inA = [...(await a1.claim(2)), ...(await a2.claim(10))];
    const inB = await b.claim(10);
    expect(inA.map((d) => d.envelope.id).sort()).toEqual(sent.map((m) => m.id).sort());
    expect(inB.map((d) => d.envelope.id)).toEqual(sent.map((m) => m.id));
  });

  it('a new group starts at the first entry by default, or at the end with groupStart: latest', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(2));
    expect(await (await opened(broker.source('jobs', { group: 'early' }))).claim(10)).toHaveLength(2);
    const late = brokers.open({ groupStart: 'latest' });
    await late.publish('jobs', messages(2));
    const source = await opened(late.source('jobs'));
    expect(await source.claim(10)).toHaveLength(0);
    await late.publish('jobs', messages(1));
    expect(await source.claim(10)).toHaveLength(1);
  });

  it('retries after the delay to the same group only, counting attempts and keeping the first failure time', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const broker = brokers.open({ clock });
    const a = await opened(broker.source('jobs', { group: 'a' }));
    const b = await opened(broker.source('jobs', { group: 'b' }));
    const [sent] = messages(1);
    await broker.publish('jobs', [sent!]);
    const [first] = await a.claim(1);
    await a.retry(first!, 5000, new Error('boom'));
    expect(await a.claim(1)).toEqual([]);
    await clock.advance(4999);
    expect(await a.claim(1)).toEqual([]);
    await clock.advance(1);
    const [second] = await a.claim(1);
    expect(second).toMatchObject({ attempt: 2, fromRetry: true, firstFailedAt: '2026-01-01T00:00:00.000Z' });
    expect(second!.envelope).toEqual(sent);
    await clock.advance(1000);
    await a.retry(second!, 0, new Error('boom'));
    const [third] = await a.claim(1);
    expect(third).toMatchObject({ attempt: 3, firstFailedAt: '2026-01-01T00:00:00.000Z' });
    await a.ack([third!]);
    // The group's retry stream is emptied as it is acknowledged; group b saw the message once.
    expect(await broker.client.xlen(`${broker.streamKey('jobs')}:retry:a`)).toBe(0);
    expect((await b.claim(10)).map((d) => d.attempt)).toEqual([1]);
    expect(await b.claim(10)).toEqual([]);
  });

  it('takes over a crashed consumer’s entry after its lease, counting the attempt', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(1));
    const crashed = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [held] = await crashed.claim(1);
    expect(held?.attempt).toBe(1);
    // Within the lease nobody else gets it; once the entry has been idle longer, the next does.
    expect(await (await opened(broker.source('jobs', { leaseMs: 10_000 }))).claim(1)).toEqual([]);
    await brokers.stall(broker, crashed, [held!]);
    const other = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [taken] = await other.claim(1);
    expect(taken).toMatchObject({ attempt: 2, deliveryCount: 2, entryId: held!.entryId });
  });

  it('a consumer whose lease was taken over settles nothing: retry, dead-letter and release say so and change nothing', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(1));
    const slow = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [stale] = await slow.claim(1);
    await brokers.stall(broker, slow, [stale!]);
    const fast = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [live] = await fast.claim(1);
    expect(await slow.retry(stale!, 0, new Error('late'))).toBe(false);
    expect(await slow.deadLetter(stale!, new Error('late'))).toBe(false);
    expect(await slow.release(stale!)).toBe(false);
    expect(await broker.client.exists(broker.streamKey('jobs.dead-letter'))).toBe(0);
    const [pending] = (await broker.client.xpending(broker.streamKey('jobs'), 'keel', '-', '+', 10)) as [
      string,
      string,
      number,
      number,
    ][];
    expect(pending).toEqual([live!.entryId, fast.consumer, expect.any(Number), 2]);
    // The holder's settle goes through, and says so.
    expect(await fast.deadLetter(live!, new Error('bad'))).toBe(true);
    expect(await broker.client.xlen(broker.streamKey('jobs.dead-letter'))).toBe(1);
  });

  it('acknowledges only what the consumer still holds: an entry taken over is refused and stays its holder’s', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const broker = brokers.open({ clock });
    await broker.publish('jobs', messages(4));
    const slow = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [first, second, third] = await slow.claim(3);
    await slow.retry(third!, 0, new Error('again'));
    const [copy, fourth] = await slow.claim(2);
    expect([copy?.fromRetry, fourth?.fromRetry]).toEqual([true, false]);
    await brokers.stall(broker, slow, [first!, second!, copy!, fourth!]);
    // The lease scan takes the retry stream first: the copy, then the oldest entry.
    const fast = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const taken = await fast.claim(2);
    expect(taken.map((d) => d.entryId)).toEqual([copy!.entryId, first!.entryId]);
    // Out of lease but not taken (second, fourth): still this consumer's, so acknowledged.
    const refused = await slow.ack([first!, second!, copy!, fourth!]);
    expect(refused).toEqual([first, copy]);
    const pending = (await broker.client.xpending(broker.streamKey('jobs'), 'keel', '-', '+', 10)) as [
      string,
      string,
    ][];
    expect(pending.map(([id, consumer]) => [id, consumer])).toEqual([[first!.entryId, fast.consumer]]);
    expect(await fast.ack(taken)).toEqual([]);
    expect(await broker.stats('jobs')).toMatchObject({ groups: [{ pending: 0 }] });
    // Pending for nobody any more (an ack re-sent after a lost reply, the taker done): not refused.
    expect(await slow.ack([first!, second!])).toEqual([]);
  });

  it('refuses the ack of a delivery the consumer itself took again (a new delivery count), and leaves no taken set', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(2));
    const source = await opened(broker.source('jobs', { leaseMs: 50 }));
    const [old, other] = await source.claim(2);
    await pause(80);
    // Past its lease, the consumer's own next claim takes both over again.
    const again = await source.claim(2);
    expect(again.map((d) => d.deliveryCount)).toEqual([2, 2]);
    const taken = `${broker.streamKey('jobs')}:taken:keel:${source.consumer}`;
    expect(await broker.client.scard(taken)).toBe(2);
    expect(await source.ack([old!])).toEqual([old]);
    expect(await source.extend([other!])).toEqual([other]);
    expect(await broker.client.exists(taken)).toBe(0);
    expect(await source.ack(again)).toEqual([]);
    expect(await broker.stats('jobs')).toMatchObject({ groups: [{ pending: 0 }] });
    await broker.publish('jobs', messages(1));
    await source.claim(1);
    await pause(80);
    await source.claim(1);
    expect(await broker.client.exists(taken)).toBe(1);
    await source.close();
    expect(await broker.client.exists(taken)).toBe(0);
  });

  it('per-key ordering: an ack of a key’s message taken over is refused, and the key stays with it', async () => {
    const broker = brokers.open({ ordering: 'per-key' });
    const [a, b] = messages(2, 'k');
    await broker.publish('jobs', [a!, b!]);
    const slow = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [stale] = await slow.claim(2);
    expect(stale?.envelope.id).toBe(a!.id);
    await brokers.stall(broker, slow, [stale!]);
    const fast = await opened(broker.source('jobs', { leaseMs: 10_000 }));
    const [live] = await fast.claim(2);
    expect(live).toMatchObject({ entryId: stale!.entryId, deliveryCount: 2 });
    expect(await slow.ack([stale!])).toEqual([stale]);
    expect(await fast.claim(2)).toEqual([]);
    expect(await fast.ack([live!])).toEqual([]);
    // The key passes to b only now.
    expect((await fast.claim(2)).map((d) => d.envelope.id)).toEqual([b!.id]);
  });

  it('release hands an entry back at once, in place, without counting the attempt', async () => {
    const broker = brokers.open();
    const sent = messages(2);
    await broker.publish('jobs', sent);
    const stopping = await opened(broker.source('jobs'));
    const [held] = await stopping.claim(1);
    await stopping.release(held!);
    const other = await opened(broker.source('jobs')); // default lease: 30 s
    const got = await other.claim(5);
    expect(got.map((d) => [d.envelope.id, d.attempt])).toEqual([
      [sent[0]!.id, 1],
      [sent[1]!.id, 1],
    ]);
  });

  it('dead-letters with the error, attempts and failure times as headers, then acknowledges', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const broker = brokers.open({ clock });
    const source = await opened(broker.source('jobs'));
    const [sent] = messages(1);
    await broker.publish('jobs', [sent!]);
    await source.retry((await source.claim(1))[0]!, 0, new Error('first'));
    await clock.advance(2000);
    await source.deadLetter((await source.claim(1))[0]!, new TypeError('second'));
    expect(await source.claim(1)).toEqual([]);
    const dead = await opened(broker.source('jobs.dead-letter'));
    const [letter] = await dead.claim(1);
    expect(letter!.envelope).toEqual({
      ...sent,
      headers: {
        ...sent!.headers,
        'x-dead-letter-source': 'jobs',
        'x-dead-letter-error': 'TypeError: second',
        'x-dead-letter-attempts': '2',
        'x-dead-letter-first-failed-at': '2026-01-01T00:00:00.000Z',
        'x-dead-letter-last-failed-at': '2026-01-01T00:00:02.000Z',
      },
    });
    expect(letter!.attempt).toBe(1);
  });

  it('dead-letters an entry keel did not write, wrapped with its fields, instead of handing it to a handler', async () => {
    const broker = brokers.open();
    await broker.client.xadd(broker.streamKey('jobs'), '*', 'hello', 'world');
    await broker.publish('jobs', messages(1));
    const source = await opened(broker.source('jobs'));
    const got = await source.claim(10);
    expect(got).toHaveLength(1);
    const [letter] = await (await opened(broker.source('jobs.dead-letter'))).claim(1);
    expect(letter!.envelope).toMatchObject({
      type: 'keel.undecodable-stream-entry',
      payload: { fields: { hello: 'world' } },
      headers: { 'x-dead-letter-source': 'jobs' },
    });
  });

  it('recreates its group when the stream vanished under it (a restart without persistence)', async () => {
    const broker = brokers.open();
    const source = await opened(broker.source('jobs'));
    await broker.client.del(broker.streamKey('jobs'), `${broker.streamKey('jobs')}:retry:keel`);
    expect(await source.claim(1)).toEqual([]);
    await broker.publish('jobs', messages(1));
    expect(await source.claim(1)).toHaveLength(1);
  });

  it('removes a closed consumer’s name from the group when it holds nothing, and keeps it while it does', async () => {
    const broker = brokers.open();
    await broker.publish('jobs', messages(1));
    const holding = await opened(broker.source('jobs'));
    const idle = await opened(broker.source('jobs'));
    await holding.claim(1);
    await idle.claim(1);
    await holding.close();
    await idle.close();
    const consumers = (await broker.client.xinfo(
      'CONSUMERS',
      broker.streamKey('jobs'),
      'keel',
    )) as unknown[][];
    expect(consumers.map((c) => c[1])).toEqual([holding.consumer]);
  });
});

describe('RedisStreamsBroker: delayed delivery, redrive, replay', () => {
  it('parks a message published for later until the clock reaches its time', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const broker = brokers.open({ clock });
    const source = await opened(broker.source('jobs'));
    await broker.publish('jobs', messages(2), { availableAt: clock.now() + 60_000 });
    await broker.publish('jobs', messages(1), { availableAt: clock.now() - 1 });
    expect(await broker.stats('jobs')).toMatchObject({ length: 1, delayed: 2 });
    expect(await source.claim(10)).toHaveLength(1);
    await clock.advance(59_999);
    expect(await source.claim(10)).toHaveLength(0);
    await clock.advance(1);
    expect(await source.claim(10)).toHaveLength(2);
  });

  it('delivers what another process scheduled: its delayed publishes and a dead consumer’s retries', async () => {
    const here = brokers.open();
    // Another process: a second broker on the same keys, with a clock of its own.
    const there = brokers.open({ keyPrefix: here.streamKey('x').replace('{x}', '') });
    const source = await opened(here.source('jobs', { leaseMs: 30_000 }));
    expect(await source.claim(10)).toEqual([]); // a full claim: nothing is known to be due
    const [later] = messages(1);
    await there.publish('jobs', [later!], { availableAt: Date.now() + 100 });
    const dying = await opened(there.source('jobs'));
    await there.publish('jobs', messages(1));
    await dying.retry((await dying.claim(1))[0]!, 100, new Error('then the process died'));
    const got: number[] = [];
    const deadline = Date.now() + 2000;
    while (got.length < 2 && Date.now() < deadline) {
      for (const d of await source.claim(10)) got.push(d.attempt);
      await pause(20);
    }
    expect(got.sort()).toEqual([1, 2]);
  });

  it('redrives dead letters to where they came from, or to `to`, up to `limit`, once each', async () => {
    const broker = brokers.open();
    const fromA = messages(3).map((m) => ({ ...m, headers: { ...m.headers, 'x-dead-letter-source': 'a' } }));
    const orphan = messages(1);
    await broker.publish('dl', [...fromA, ...orphan]);
    expect(await broker.redrive('dl', { limit: 2 })).toBe(2);
    expect(await broker.redrive('dl')).toBe(1); // the orphan has no source and stays
    expect((await entries(broker, 'dl')).map((e) => e.id)).toEqual([orphan[0]!.id]);
    const redriven = await entries(broker, 'a');
    expect(redriven.map((e) => e.id)).toEqual(fromA.map((m) => m.id));
    expect(JSON.parse(redriven[0]!.headers!)).toEqual({ 'correlation-id': 'c0', 'x-redrive-count': '1' });
    expect(redriven[0]!.attempt).toBe('0');
    expect(await broker.redrive('dl', { to: 'b' })).toBe(1);

    await broker.publish('dl2', messages(50));
    const moved = await Promise.all([broker.redrive('dl2', { to: 'c' }), broker.redrive('dl2', { to: 'c' })]);
    expect(moved[0] + moved[1]).toBe(50);
    expect(await broker.client.xlen(broker.streamKey('c'))).toBe(50);
  });

  it('replays a stream from the start, after an entry id, or from a time, whatever was acknowledged', async () => {
    const broker = brokers.open();
    const sent = messages(5);
    await broker.publish('jobs', sent);
    const source = await opened(broker.source('jobs'));
    await source.ack(await source.claim(5));
    const all = [];
    for await (const entry of broker.replay('jobs', { batchSize: 2 })) all.push(entry);
    expect(all.map((e) => e.envelope)).toEqual(sent);
    const after = [];
    for await (const entry of broker.replay('jobs', { from: all[2]!.entryId })) after.push(entry.envelope.id);
    expect(after).toEqual([sent[3]!.id, sent[4]!.id]);
    const fromTime = [];
    const ms = Number(all[0]!.entryId.split('-')[0]);
    for await (const entry of broker.replay('jobs', { from: ms })) fromTime.push(entry.envelope.id);
    expect(fromTime[0]).toBe(sent[0]!.id);
    expect(() => broker.replay('jobs', { from: 'yesterday' })).toThrow(/from/);
  });
});

describe('RedisStreamsBroker: connections', () => {
  it('survives its connections being cut mid-work: in-flight acks and new publishes go through after reconnect', async () => {
    const broker = brokers.open();
    const handled = new Set<string>();
    let release: (() => void) | undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const consumer = broker.consumer(
      'jobs',
      async (message) => {
        await gate;
        handled.add(message.id);
      },
      { concurrency: 4, pollIntervalMs: 50, leaseMs: 2000 },
    );
    await consumer.start();
    const before = messages(4);
    await broker.publish('jobs', before);
    while (consumer.inFlight < 4) await pause(10);
    expect(await brokers.cutConnections()).toBeGreaterThanOrEqual(2); // commands and wake-ups
    release?.();
    const after = messages(4);
    await broker.publish('jobs', after);
    const deadline = Date.now() + 10_000;
    while (handled.size < 8 && Date.now() < deadline) await pause(20);
    await consumer.stop();
    expect([...handled].sort()).toEqual([...before, ...after].map((m) => m.id).sort());
    expect(await broker.stats('jobs')).toMatchObject({ groups: [{ pending: 0, lag: 0 }] });
  });

  it('rejects publishes with PublishError naming every message when the server cannot be reached', async () => {
    const broker = new RedisStreamsBroker({
      redis: { host: '127.0.0.1', port: 1, maxRetriesPerRequest: 0, retryStrategy: () => null },
    });
    const sent = messages(2);
    const error = await broker.publish('jobs', sent).catch((e: unknown) => e);
    await broker.close();
    expect(error).toBeInstanceOf(PublishError);
    expect((error as PublishError).failedIds).toEqual(sent.map((m) => m.id));
  });

  it('leaves no connection open after close', async () => {
    const broker = brokers.open();
    const consumer = broker.consumer('jobs', async () => {});
    await consumer.start();
    expect((await brokers.openConnections()).length).toBe(2);
    await consumer.stop();
    await broker.close();
    await broker.close();
    expect(await brokers.openConnections()).toEqual([]);
  });
});
