// The set-up every test file against the real Kafka repeats: the broker required (never a
// silent skip) and marked in use, topics deleted and cleanups run after. Not part of the public
// door; kept apart from test-support.ts, which child processes load outside vitest.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  Admin,
  connectionsApiChannel,
  instancesChannel,
  Producer,
  type CreationEvent,
} from '@platformatic/kafka';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { deleteTopics, kafkaBrokers, requireKafka, useKafka } from './test-support.ts';

export interface KafkaTestSuite {
  /** Topics the file created: deleted after its last test. */
  readonly topics: string[];
  /** Run after each test, last pushed first. */
  readonly cleanups: (() => Promise<unknown>)[];
  /** An admin client for the whole file (with `clients`). */
  readonly admin: Admin;
  /** An idempotent producer for the whole file (with `clients`). */
  readonly producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  /** Counts the Kafka consumer clients created with `clientId` from now to the end of the test. */
  clientsCreated(clientId: string): { count: () => number };
  /** Counts the requests that the Kafka clients created with `clientId` from now on send, to the end of the test. */
  requestsSent(clientId: string): { count: (api: KafkaApi) => number };
}

/** The Kafka APIs `requestsSent` tells apart, by their API keys. */
const apiKeys = { Fetch: 1, ListOffsets: 2, Metadata: 3 } as const;
export type KafkaApi = keyof typeof apiKeys;

/** Registers the file's hooks; `clientId` given, also an admin client and a producer it shares. */
export function kafkaTestSuite(options: { clientId?: string } = {}): KafkaTestSuite {
  const topics: string[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];
  let admin: Admin | undefined;
  let producer: Producer<Buffer, Buffer, Buffer, Buffer> | undefined;
  let releaseKafka: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    releaseKafka = await useKafka();
    await requireKafka();
    if (options.clientId === undefined) return;
    admin = new Admin({ clientId: options.clientId, bootstrapBrokers: kafkaBrokers });
    // Idempotent: a send retried while a new topic's leaders settle must not write its records twice.
    producer = new Producer({
      clientId: options.clientId,
      bootstrapBrokers: kafkaBrokers,
      idempotent: true,
      acks: -1,
    });
  }, 180_000);
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    try {
      await producer?.close();
      await admin?.close();
      await deleteTopics(topics);
    } finally {
      await releaseKafka?.();
    }
  }, 30_000);
  const required = <T>(client: T | undefined, name: string): T => {
    if (client === undefined)
      throw new Error(`kafkaTestSuite: no ${name} without a clientId, or before beforeAll`);
    return client;
  };
  const clientsCreated = (clientId: string): { count: () => number } => {
    let count = 0;
    const onCreated = (message: unknown): void => {
      const { type, instance } = message as CreationEvent<{ clientId?: string }>;
      if (type === 'consumer' && instance.clientId === clientId) count++;
    };
    subscribe(instancesChannel.name, onCreated);
    cleanups.push(async () => unsubscribe(instancesChannel.name, onCreated));
    return { count: () => count };
  };
  const requestsSent = (clientId: string): { count: (api: KafkaApi) => number } => {
    const owners = new Set<number>();
    const counts = new Map<number, number>();
    const onCreated = (message: unknown): void => {
      const { instance } = message as CreationEvent<{ clientId?: string; instanceId?: number }>;
      if (instance.clientId === clientId && instance.instanceId !== undefined)
        owners.add(instance.instanceId);
    };
    // A connection's owner is the client instance that opened it.
    const onRequest = (message: unknown): void => {
      const { connection, apiKey } = message as { connection?: { ownerId?: number }; apiKey: number };
      const owner = connection?.ownerId;
      if (owner !== undefined && owners.has(owner)) counts.set(apiKey, (counts.get(apiKey) ?? 0) + 1);
    };
    subscribe(instancesChannel.name, onCreated);
    connectionsApiChannel.start.subscribe(onRequest);
    cleanups.push(async () => {
      unsubscribe(instancesChannel.name, onCreated);
      connectionsApiChannel.start.unsubscribe(onRequest);
    });
    return { count: (api) => counts.get(apiKeys[api]) ?? 0 };
  };
  return {
    topics,
    cleanups,
    clientsCreated,
    requestsSent,
    get admin() {
      return required(admin, 'admin');
    },
    get producer() {
      return required(producer, 'producer');
    },
  };
}
