// What the WAL outbox's integration files share: a logical-replication server of the file's own
// (`startWalOutboxTestServer` from keel/testing, whose slots also build relays, write messages and
// read their status), the test messages, and a publisher that records, fails or holds on demand.
import { afterAll, beforeAll } from 'vitest';
import type { Db } from '../../src/db/index.ts';
import { createEnvelope, type Envelope, type Publisher } from '../../src/messaging/index.ts';
import { startWalOutboxTestServer, type WalOutboxTestServer } from '../../src/testing/index.ts';

/** The started server, as a file's tests see it. */
export type WalOutboxTestKit = Pick<WalOutboxTestServer, 'server' | 'url' | 'db' | 'newSlot' | 'defaultSlot'>;

/**
 * Registers the file's hooks: the server starts before its first test (`setUp` runs then, on it)
 * and stops after its last. Read the returned kit's members inside tests and hooks only.
 */
export function walOutboxTestServer(setUp?: (db: Db) => Promise<unknown>): WalOutboxTestKit {
  let started: WalOutboxTestServer | undefined;
  beforeAll(async () => {
    started = await startWalOutboxTestServer();
    await setUp?.(started.db);
  }, 60_000);
  afterAll(async () => {
    await started?.stop();
  });
  const wal = (): WalOutboxTestServer => {
    if (started === undefined) throw new Error('the WAL outbox test server starts before the first test');
    return started;
  };
  return {
    get server() {
      return wal().server;
    },
    get url() {
      return wal().url;
    },
    get db() {
      return wal().db;
    },
    newSlot: (on) => wal().newSlot(on),
    defaultSlot: (on) => wal().defaultSlot(on),
  };
}

/** A `test.event.v1` message of `key` carrying `{ n, ...payload }`. */
export function testEvent(n: number, key = 'k', payload: Record<string, unknown> = {}): Envelope {
  return createEnvelope({ type: 'test.event.v1', key, payload: { ...payload, n } });
}

/** The `n` a `testEvent` carries. */
export const eventNumber = (message: Envelope): number => (message.payload as { n: number }).n;

/**
 * Records what it takes, by destination, once `hold` (if it returns a promise) resolves and
 * `fail` returns no error; every call counts in `calls`, first thing.
 */
export class TestPublisher implements Publisher {
  readonly received: { destination: string; message: Envelope }[] = [];
  calls = 0;
  /** Per call: the error it fails with, or undefined to take the messages. */
  fail: (destination: string, messages: readonly Envelope[]) => Error | undefined = () => undefined;
  /** Per call: what it waits for first (a rejection fails the call), or undefined to go on. */
  hold: (messages: readonly Envelope[]) => Promise<void> | undefined = () => undefined;

  async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
    this.calls++;
    await this.hold(messages);
    const error = this.fail(destination, messages);
    if (error !== undefined) throw error;
    for (const message of messages) this.received.push({ destination, message });
  }

  /** The messages taken, in order. */
  messages(): Envelope[] {
    return this.received.map((r) => r.message);
  }

  /** The ids of the messages taken, in order. */
  ids(): string[] {
    return this.received.map((r) => r.message.id);
  }
}
