// What a KafkaSource says of its own link (`connectionLost()`), on a manual clock, its Kafka
// client faked at its prototype: the stream `consume()` gives is a bare emitter the test ends as
// the client ends one (an 'error', then 'close'), and the group's events are emitted on the
// consumer itself. Against a real Kafka cut off by a proxy: kafka-consumer-health.test.ts.
import { EventEmitter } from 'node:events';
import { Consumer, NetworkError } from '@platformatic/kafka';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KeelError } from '../../../errors/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { answered, fetchApi } from './kafka-answers-test-support.ts';
import { KafkaSource } from './kafka-source.ts';
import { switchOverMs } from './kafka-source-link.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

/** A stream as the source uses it; `fail` ends it as the client does when a fetch fails for good. */
class FakeStream extends EventEmitter {
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  async close(): Promise<void> {
    this.emit('close');
  }
  fail(error: unknown): void {
    this.emit('error', error);
    this.emit('close');
  }
}

/** How a call of the faked client answers: at once, with a failure, or never. */
type Answer = 'ok' | Error | 'hang';

interface FakeClient {
  /** The consumer the source made (once it has opened). */
  consumer(): Consumer;
  /** `joinGroup()` calls so far (the source's rejoins; a `consume()` joins on its own). */
  rejoins(): number;
  /** The streams `consume()` gave, in order. */
  readonly streams: FakeStream[];
  /** How the next `consume()` calls answer, one each; `ok` when none is left. */
  readonly consumes: Answer[];
  /** How the next `joinGroup()` calls answer, one each; `ok` when none is left. */
  readonly joins: Answer[];
  /** What the consumer's `isConnected()` says: its own connections (coordinator, metadata) all up. */
  connected: boolean;
}

function fakeClient(topic: string): FakeClient {
  const consumers: Consumer[] = [];
  let rejoins = 0;
  const client: FakeClient = {
    consumer: () => consumers[0]!,
    rejoins: () => rejoins,
    streams: [],
    consumes: [],
    joins: [],
    connected: true,
  };
  const answer = async (next: Answer | undefined): Promise<void> => {
    if (next === 'hang') await new Promise<never>(() => undefined);
    if (next instanceof Error) throw next;
  };
  const joined = (on: Consumer): void => {
    on.assignments = [{ topic, partitions: [0] }];
    on.emit('consumer:group:join', {
      groupId: 'g',
      memberId: 'm',
      generationId: 1,
      isLeader: true,
      assignments: [],
    });
  };
  vi.spyOn(Consumer.prototype, 'consume').mockImplementation(async function (this: Consumer) {
    if (!consumers.includes(this)) consumers.push(this);
    await answer(client.consumes.shift());
    joined(this);
    const stream = new FakeStream();
    client.streams.push(stream);
    return stream;
  } as never);
  vi.spyOn(Consumer.prototype, 'joinGroup').mockImplementation(async function (this: Consumer) {
    rejoins++;
    await answer(client.joins.shift());
    joined(this);
    return 'm';
  });
  vi.spyOn(Consumer.prototype, 'isConnected').mockImplementation(() => client.connected);
  vi.spyOn(Consumer.prototype, 'close').mockImplementation(function (
    force?: unknown,
    callback?: (error?: Error | null) => void,
  ) {
    const done = typeof force === 'function' ? (force as typeof callback) : callback;
    if (done !== undefined) return void done(null);
    return Promise.resolve();
  } as never);
  return client;
}

const sources: KafkaSource[] = [];
afterEach(async () => {
  for (const source of sources.splice(0)) await source.close();
});

async function openSource(clock: ManualClock): Promise<{ source: KafkaSource; kafka: FakeClient }> {
  const kafka = fakeClient('orders');
  const source = new KafkaSource(
    'orders',
    {
      clock,
      bootstrapBrokers: ['127.0.0.1:1'],
      clientId: 'keel-test',
      ensureTopic: async () => undefined,
      send: async () => undefined,
    },
    {
      group: 'keel.orders',
      deadLetterDestination: 'orders.dead-letter',
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs: 1000,
      maxBuffered: 4,
      maxWaitMs: 100,
      awaitCommit: true,
    },
  );
  sources.push(source);
  await source.open(() => undefined);
  return { source, kafka };
}

/** The client's failure of a fetch whose leader moved: its retries all answered so. */
const leaderMoved = (): Error => answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER');

describe('KafkaSource.connectionLost(): a stream ended by a partition leader moving', () => {
  it('is no loss when the consumer is still connected and the reopen goes through', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    kafka.streams[0]!.fail(leaderMoved());
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(500);
    expect(kafka.streams).toHaveLength(2);
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(switchOverMs);
    expect(source.connectionLost()).toBeUndefined();
  });

  it('is a loss from its end once a reopen fails', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const endedAt = clock.now();
    const refused = new NetworkError('Connection closed');
    kafka.consumes.push(refused);
    kafka.streams[0]!.fail(leaderMoved());
    await clock.advance(499);
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(1);
    const loss = source.connectionLost();
    expect(loss).toMatchObject({ since: endedAt, attempts: 1 });
    expect(loss!.error).toBeInstanceOf(KeelError);
    expect((loss!.error as KeelError).cause).toBe(refused);
    // The next reopen, a second later, goes through.
    await clock.advance(1000);
    expect(source.connectionLost()).toBeUndefined();
  });

  it(`is a loss from its end once it has been down for ${switchOverMs} ms, the reopen still going`, async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const endedAt = clock.now();
    kafka.consumes.push('hang');
    const cause = leaderMoved();
    kafka.streams[0]!.fail(cause);
    await clock.advance(switchOverMs - 1);
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(1);
    expect(source.connectionLost()).toEqual({ since: endedAt, attempts: 0, error: cause });
  });

  it(`is a loss from the first end once streams reopened keep ending for ${switchOverMs} ms (a partition without a leader)`, async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const endedAt = clock.now();
    kafka.streams[0]!.fail(leaderMoved());
    while (clock.now() - endedAt < switchOverMs) {
      expect(source.connectionLost()).toBeUndefined();
      const opened = kafka.streams.length;
      await clock.advanceToNext();
      // Each reopen goes through, and its stream ends at once.
      expect(kafka.streams).toHaveLength(opened + 1);
      kafka.streams.at(-1)!.fail(leaderMoved());
    }
    expect(source.connectionLost()).toMatchObject({ since: endedAt });
  });

  it('is a loss at once when the consumer’s own connections are down too: the link, not a leader', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const cut = new NetworkError('Connection closed');
    kafka.connected = false;
    kafka.streams[0]!.fail(cut);
    expect(source.connectionLost()).toEqual({ since: clock.now(), attempts: 0, error: cut });
    kafka.connected = true;
    await clock.advance(500);
    expect(source.connectionLost()).toBeUndefined();
  });
});

describe('KafkaSource.connectionLost(): the group membership', () => {
  it('is a loss at once when the heartbeats fail, the stream paused or not; rejoined in the background, failed rejoins counted', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const failedAt = clock.now();
    const heartbeat = new NetworkError('heartbeat failed 4 times.');
    kafka.joins.push(new NetworkError('joinGroup failed 4 times.'));
    kafka
      .consumer()
      .emit('consumer:heartbeat:error', { groupId: 'g', memberId: 'm', generationId: 1, error: heartbeat });
    const loss = source.connectionLost();
    expect(loss).toMatchObject({ since: failedAt, attempts: 0 });
    expect(loss!.error).toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE', cause: heartbeat });
    await clock.advance(500);
    expect(source.connectionLost()).toMatchObject({ since: failedAt, attempts: 1 });
    // The stream was never touched: the rejoin is the consumer's, the stream stays as it is.
    await clock.advance(1000);
    expect(source.connectionLost()).toBeUndefined();
    expect(kafka.streams).toHaveLength(1);
    expect(kafka.rejoins()).toBe(2);
  });

  it('is a loss when a rejoin the client began itself fails (its `error` event, which no longer throws)', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const refused = new NetworkError('rejoinGroup failed 4 times.');
    expect(() => kafka.consumer().emit('error', refused)).not.toThrow();
    expect(source.connectionLost()).toMatchObject({ since: clock.now(), attempts: 0 });
    await clock.advance(500);
    expect(source.connectionLost()).toBeUndefined();
  });
});
