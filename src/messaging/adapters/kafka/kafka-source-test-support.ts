// A KafkaSource's Kafka client faked at its prototype, for unit tests on a manual clock: the
// stream `consume()` gives is a bare emitter the test ends as the client ends one (an 'error',
// then 'close') or feeds records through, and the group's events are emitted on the consumer
// itself. Each consumer the source builds is told apart, so that a test can move the group's
// coordinator away from the clients built so far. Not part of the public door.
import { EventEmitter } from 'node:events';
import { Consumer, MultipleErrors, NetworkError, ResponseError } from '@platformatic/kafka';
import { afterEach, vi } from 'vitest';
import type { ManualClock } from '../../../time/index.ts';
import { KafkaSource } from './kafka-source.ts';

/** A stream as the source uses it; `fail` ends it as the client does when a fetch fails for good. */
export class FakeStream extends EventEmitter {
  closed = false;
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }
  fail(error: unknown): void {
    this.emit('error', error);
    this.closed = true;
    this.emit('close');
  }
}

/** How a call of the faked client answers: at once, with a failure, or never. */
export type Answer = 'ok' | Error | 'hang';

/** An offset commit a consumer's `commit()` accepted. */
export interface FakeCommit {
  readonly consumer: Consumer;
  readonly partition: number;
  readonly offset: bigint;
}

export interface FakeClient {
  /** The first consumer the source made (once it has opened). */
  consumer(): Consumer;
  /** Every consumer the source used, in the order of their first `consume()`. */
  readonly consumers: Consumer[];
  /** The consumers closed. */
  readonly closed: Set<Consumer>;
  /** `joinGroup()` calls so far (the source's rejoins; a `consume()` joins on its own). */
  rejoins(): number;
  /** The streams `consume()` gave, in order. */
  readonly streams: FakeStream[];
  /** How the next `consume()` calls answer, one each; `ok` when none is left. */
  readonly consumes: Answer[];
  /** How the next `joinGroup()` calls answer, one each; `ok` when none is left. */
  readonly joins: Answer[];
  /** The commits accepted, in order. */
  readonly commits: FakeCommit[];
  /** What the consumer's `isConnected()` says: its own connections (coordinator, metadata) all up. */
  connected: boolean;
  /**
   * The coordinator refuses LeaveGroup: a `close()` of a consumer with a member id fails, and
   * the client stays open (as the client's close stops at a failed leave).
   */
  leaveRefused: boolean;
  /**
   * The group's coordinator moves to another broker: every consumer built so far goes on asking
   * the node it found first (as @platformatic/kafka 1.35.0 does), so its group calls (a join,
   * a `consume()`'s join, a commit) fail with `refusal(operation)`; a consumer built later asks
   * for the coordinator afresh and is answered.
   */
  coordinatorMoved(refusal: (operation: string) => Error): void;
  /** A record of `orders`' partition 0 at `offset`, as `consumer`'s stream hands it out. */
  message(consumer: Consumer, offset: bigint): unknown;
}

export function fakeClient(topic: string): FakeClient {
  const consumers: Consumer[] = [];
  const stale = new Map<Consumer, (operation: string) => Error>();
  let rejoins = 0;
  const client: FakeClient = {
    consumer: () => consumers[0]!,
    consumers,
    closed: new Set(),
    rejoins: () => rejoins,
    streams: [],
    consumes: [],
    joins: [],
    commits: [],
    connected: true,
    leaveRefused: false,
    coordinatorMoved: (refusal) => {
      for (const consumer of consumers) stale.set(consumer, refusal);
    },
    message: (consumer, offset) => ({
      topic,
      partition: 0,
      offset,
      key: null,
      value: Buffer.from('{}'),
      headers: new Map(),
      timestamp: 1_700_000_000_000n,
      metadata: {},
      // As the client's message commits: through the consumer whose stream fetched it.
      commit: () =>
        consumer.commit({ offsets: [{ topic, partition: 0, offset: offset + 1n, leaderEpoch: 0 }] }),
    }),
  };
  const answer = async (next: Answer | undefined): Promise<void> => {
    if (next === 'hang') await new Promise<never>(() => undefined);
    if (next instanceof Error) throw next;
  };
  const refuse = (on: Consumer, operation: string): void => {
    const refusal = stale.get(on);
    if (refusal !== undefined) throw refusal(operation);
  };
  const joined = (on: Consumer): void => {
    on.memberId = 'm';
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
    refuse(this, 'joinGroup');
    await answer(client.consumes.shift());
    joined(this);
    const stream = new FakeStream();
    client.streams.push(stream);
    return stream;
  } as never);
  vi.spyOn(Consumer.prototype, 'joinGroup').mockImplementation(async function (this: Consumer) {
    rejoins++;
    refuse(this, 'joinGroup');
    await answer(client.joins.shift());
    joined(this);
    return 'm';
  });
  vi.spyOn(Consumer.prototype, 'commit').mockImplementation(async function (
    this: Consumer,
    options: { offsets: { partition: number; offset: bigint }[] },
  ) {
    if (client.closed.has(this)) throw new NetworkError('Client is closed.', { closed: true });
    refuse(this, 'commit');
    for (const { partition, offset } of options.offsets)
      client.commits.push({ consumer: this, partition, offset });
  });
  vi.spyOn(Consumer.prototype, 'isConnected').mockImplementation(() => client.connected);
  vi.spyOn(Consumer.prototype, 'close').mockImplementation(function (
    this: Consumer,
    force?: unknown,
    callback?: (error?: Error | null) => void,
  ) {
    const done = typeof force === 'function' ? (force as typeof callback) : callback;
    const refused =
      client.leaveRefused && this.memberId !== null ? groupRefusal('leaveGroup', 'NOT_COORDINATOR') : null;
    if (refused === null) client.closed.add(this);
    if (done !== undefined) return void done(refused);
    return refused === null ? Promise.resolve() : Promise.reject(refused);
  } as never);
  return client;
}

const protocolCodes: Record<string, number> = {
  COORDINATOR_LOAD_IN_PROGRESS: 14,
  COORDINATOR_NOT_AVAILABLE: 15,
  NOT_COORDINATOR: 16,
};
const groupApis: Record<string, [api: number, version: number]> = {
  heartbeat: [12, 4],
  joinGroup: [11, 9],
  commit: [8, 8],
  leaveGroup: [13, 5],
};

/**
 * How the client fails a group call (`heartbeat`, `joinGroup`, `commit`, `leaveGroup`) that its coordinator
 * answered with `id` each time: its retries (three) exhausted.
 */
export function groupRefusal(operation: string, id: string): MultipleErrors {
  const [api, version] = groupApis[operation]!;
  const answers = Array.from(
    { length: 4 },
    () => new ResponseError(api, version, { '': [protocolCodes[id]!, null] }, {}),
  );
  return new MultipleErrors(`${operation} failed 4 times.`, answers);
}

const sources: KafkaSource[] = [];
// The sources close on the faked client, before the fakes go.
afterEach(async () => {
  for (const source of sources.splice(0)) await source.close();
  vi.restoreAllMocks();
});

/** A source over `orders` on `clock`, opened, its client faked; closed after the test. */
export async function openSource(
  clock: ManualClock,
  wake: () => void = () => undefined,
): Promise<{ source: KafkaSource; kafka: FakeClient }> {
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
  await source.open(wake);
  return { source, kafka };
}
