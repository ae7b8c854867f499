// The WAL outbox relay's health() against a real PostgreSQL with wal_level=logical (a server of the
// file's own, from startPgServer): ok while it streams, failing on the broker while publishes fail,
// ok as a standby while another relay holds the slot, failing on replication when the server ends
// its stream, and ok again once it streams (or stands by) again. The unit tests are in
// src/outbox/wal-outbox-relay-health.test.ts.
import { describe, expect, it } from 'vitest';
import { until } from '../until.ts';
import type { Publisher } from '../../src/messaging/index.ts';
import type { WalOutboxRelay } from '../../src/outbox/index.ts';
import { CircuitBreakerPolicy } from '../../src/resilience/index.ts';
import type { ServiceHealth } from '../../src/service/index.ts';
import type { WalOutboxTestSlot } from '../../src/testing/index.ts';
import { testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer();

function relayFor(publisher: Publisher, names: WalOutboxTestSlot): WalOutboxRelay {
  const relay = names.relay(publisher, {
    retryDelay: () => 100,
    // Neither parks nor opens while the test's broker is down for a few calls.
    maxAttempts: 100,
    breaker: new CircuitBreakerPolicy({ threshold: { kind: 'consecutive', failures: 100 } }),
  });
  relay.events.on('error', () => undefined);
  return relay;
}

describe('WalOutboxRelay health() on a real server', () => {
  it('ok while streaming and as a standby; failing on the broker, then on replication when the server ends the stream; ok again after each', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const relay = relayFor(publisher, names);
    expect(relay.health()).toEqual({ status: 'not-running', state: 'idle' });
    const streaming = relay.events.once('streaming');
    await relay.start();
    await streaming;
    expect(relay.health()).toMatchObject({ status: 'ok' });

    // The broker fails: failing on it, and ok once a publish goes through.
    const down = new Error('broker down');
    publisher.fail = () => down;
    await names.write('orders', testEvent(1));
    await until(() => relay.health().status === 'failing', 15_000, 'the broker failing');
    expect(relay.health()).toMatchObject({ dependency: 'broker', during: 'publish', lastError: down });
    publisher.fail = () => undefined;
    await until(() => publisher.received.length === 1, 15_000, 'the message published');
    expect(relay.health()).toMatchObject({ status: 'ok' });

    // A second relay on the slot stands by: ok, its contact the server's answer to each try.
    const second = relayFor(new TestPublisher(), names);
    const standby = second.events.once('standby');
    await second.start();
    await standby;
    const asStandby = second.health();
    expect(asStandby.status).toBe('ok');
    expect(asStandby.status === 'ok' ? asStandby.lastContactAt : undefined).toBeTypeOf('number');

    // The server ends the first relay's stream: failing on replication, as it reports the error.
    const atError: ServiceHealth[] = [];
    relay.events.on('error', ({ during }) => {
      if (during === 'stream') atError.push(relay.health());
    });
    await wal.db.query(
      'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1',
      [names.slotName],
    );
    await until(() => atError.length > 0, 15_000, 'the stream broken');
    expect(atError[0]).toMatchObject({
      status: 'failing',
      dependency: 'replication',
      during: 'stream',
      failures: 1,
    });
    // It streams again, or stands by while the second took the slot: ok either way.
    await until(() => relay.health().status === 'ok', 15_000, 'the first relay ok again');
    expect(second.health()).toMatchObject({ status: 'ok' });

    await second.stop();
    await relay.stop();
    expect(relay.health()).toEqual({ status: 'not-running', state: 'stopped' });
    await names.drop();
  }, 60_000);
});
