// The WAL outbox relay against a server process that stops answering while its socket stays open
// (the walsender SIGSTOPped: what a network that drops packets without a reset looks like from the
// relay): the relay hears nothing for receiveTimeoutMs, ends the stream (KEEL_TIMEOUT, failing on
// replication) and streams again; once the stuck process is gone, it publishes what was written
// meanwhile, in order, nothing lost. And no false alarm: a publish that takes several timeouts,
// with the relay not reading its full queue meanwhile, ends no stream (health() names the publish
// hanging instead, until it answers). The liveness rule itself is
// unit-tested in src/outbox/wal-outbox-relay-liveness.test.ts.
import { describe, expect, it } from 'vitest';
import type { ServiceHealth } from '../../src/service/index.ts';
import { until } from '../until.ts';
import { eventNumber, testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer();

async function walsenderOf(slotName: string): Promise<number> {
  const { rows } = await wal.db.query<{ pid: number | null }>(
    'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
    [slotName],
  );
  const pid = rows[0]?.pid;
  if (pid == null) throw new Error(`no process streams slot ${slotName}`);
  return pid;
}

describe('WalOutboxRelay receiveTimeoutMs on a real server', () => {
  it('ends a stream whose server went silent, reports it, and streams again once the slot is free', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    const relay = names.relay(publisher, { receiveTimeoutMs: 1500 });
    const ended: { error: unknown; health: ServiceHealth }[] = [];
    relay.events.on('error', ({ error, during }) => {
      if (during === 'stream') ended.push({ error, health: relay.health() });
    });
    const streaming = relay.events.once('streaming');
    await relay.start();
    await streaming;
    await names.write('orders', testEvent(1));
    await until(() => publisher.received.length === 1, 15_000, 'the first message published');

    const walsender = await walsenderOf(names.slotName);
    process.kill(walsender, 'SIGSTOP');
    try {
      await names.write('orders', testEvent(2));
      await until(() => ended.length > 0, 15_000, 'the silent stream ended');
      expect(ended[0]!.error).toMatchObject({ code: 'KEEL_TIMEOUT' });
      expect(ended[0]!.health).toMatchObject({
        status: 'failing',
        dependency: 'replication',
        during: 'stream',
      });
      // Nothing was published from a stream that said nothing.
      expect(publisher.received).toHaveLength(1);
    } finally {
      // A stopped process acts on its SIGTERM once it runs again: it exits, and lets the slot go.
      process.kill(walsender, 'SIGTERM');
      process.kill(walsender, 'SIGCONT');
    }

    await until(() => publisher.received.length === 2, 20_000, 'the message written meanwhile published');
    expect(publisher.messages().map(eventNumber)).toEqual([1, 2]);
    expect(await walsenderOf(names.slotName)).not.toBe(walsender);
    await until(() => relay.health().status === 'ok', 15_000, 'the relay ok again');
    await relay.stop();
    await names.drop();
  }, 60_000);

  it('ends no stream while the server answers: a publish held for several timeouts (failing on the broker meanwhile), the queue full', async () => {
    const names = await wal.newSlot();
    const publisher = new TestPublisher();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    publisher.hold = () => held;
    // A queue of one: the relay stops reading while the first publish is held.
    const relay = names.relay(publisher, { receiveTimeoutMs: 1000, maxBuffered: 1, batchSize: 1 });
    const errors: unknown[] = [];
    relay.events.on('error', ({ error }) => errors.push(error));
    const streaming = relay.events.once('streaming');
    await relay.start();
    await streaming;
    for (let n = 1; n <= 5; n++) await names.write('orders', testEvent(n));
    await until(() => publisher.calls > 0, 15_000, 'the first publish under way');
    await new Promise((resolve) => setTimeout(resolve, 3500));
    // The stream is fine; the publish is what hangs, and health() says so.
    expect(relay.health()).toMatchObject({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      failures: 0,
    });
    release();
    await until(() => publisher.received.length === 5, 15_000, 'all five published');
    // Idle afterwards, reading: the server answers each status report, so no stream ends either.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(errors).toEqual([]);
    expect(publisher.messages().map(eventNumber)).toEqual([1, 2, 3, 4, 5]);
    expect(relay.health()).toMatchObject({ status: 'ok' });
    await relay.stop();
    await names.drop();
  }, 60_000);
});
