// instrumentWalOutboxRelay against a real PostgreSQL 15 with wal_level=logical (startPgServer),
// read by the OpenTelemetry SDK's own MetricReader: the slot's lag and the relay's buffered
// messages as gauges read at collection, published / publish-failed / parked as counters, one
// series per slot for the relays of that slot.
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.ts';
import { InvalidArgumentError } from '../../src/errors/index.ts';
import { WalOutboxRelay } from '../../src/outbox/index.ts';
import { instrumentWalOutboxRelay, keelAttributes, metricNames } from '../../src/observability/index.ts';
import { until } from '../until.ts';
import { testEvent, TestPublisher, walOutboxTestServer } from './wal-outbox-kit.ts';

const wal = walOutboxTestServer();

class CollectingReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** Every data point of one collection, by metric name, as `{ slot: value }`. */
async function collect(reader: CollectingReader): Promise<Map<string, Record<string, number>>> {
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  const points = new Map<string, Record<string, number>>();
  for (const metric of resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)) {
    for (const point of metric.dataPoints) {
      const slot = String(point.attributes[keelAttributes.walOutboxSlot]);
      points.set(metric.descriptor.name, {
        ...points.get(metric.descriptor.name),
        [slot]: point.value as number,
      });
    }
  }
  return points;
}

const counters = [
  metricNames.walOutboxPublished,
  metricNames.walOutboxPublishFailed,
  metricNames.walOutboxParked,
];

describe('instrumentWalOutboxRelay', () => {
  it('reports lag and buffered at collection, and counts published, failed and parked messages', async () => {
    const slot = await wal.newSlot();
    const { slotName } = slot;
    /** The one series of the slot: `{ [slotName]: value }`. */
    const series = (value: number): Record<string, number> => ({ [slotName]: value });
    const reader = new CollectingReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('keel');

    // The first publish waits for the test; the poison message is refused for what it is.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const poison = testEvent(2);
    const publisher = new TestPublisher();
    publisher.hold = () => held;
    publisher.fail = (_destination, messages) =>
      messages.some((m) => m.id === poison.id)
        ? new InvalidArgumentError('payload', 'another', 2)
        : undefined;
    const options = { retryDelay: () => 10, batchSize: 1 };
    const relay = slot.relay(publisher, options);
    // A second relay of the slot, standing by: the same series, not a second one.
    const standby = slot.relay(publisher, options);
    const handle = instrumentWalOutboxRelay(relay, meter, { db: wal.db, slotName });
    const standbyHandle = instrumentWalOutboxRelay(standby, meter, { db: wal.db, slotName });
    try {
      const idle = await collect(reader);
      expect(idle.get(metricNames.walOutboxBuffered)).toEqual(series(0));
      expect(idle.get(metricNames.walOutboxLag)![slotName]).toBeGreaterThanOrEqual(0);
      for (const name of counters) expect(idle.has(name), name).toBe(false);

      // Another key after the poison one: a later message of its own key would wait behind it.
      await slot.write('orders', [testEvent(1), poison, testEvent(3, 'j')]);
      // Nothing streams yet: the slot holds the transaction's WAL.
      expect((await collect(reader)).get(metricNames.walOutboxLag)![slotName]).toBeGreaterThan(0);

      const streaming = relay.events.once('streaming');
      await relay.start();
      await streaming;
      const standingBy = standby.events.once('standby');
      await standby.start();
      await standingBy;
      await until(() => relay.buffered === 3);
      expect((await collect(reader)).get(metricNames.walOutboxBuffered)).toEqual(series(3));

      let parked = 0;
      relay.events.on('parked', () => parked++);
      release();
      await until(() => publisher.received.length === 2 && parked === 1 && relay.buffered === 0);
      const after = await collect(reader);
      expect(after.get(metricNames.walOutboxPublished)).toEqual(series(2));
      // batchSize 1: the poison message failed once, alone, and was parked (a permanent error).
      expect(after.get(metricNames.walOutboxPublishFailed)).toEqual(series(1));
      expect(after.get(metricNames.walOutboxParked)).toEqual(series(1));
      expect(after.get(metricNames.walOutboxBuffered)).toEqual(series(0));

      // Detached: the totals stay, and the relay's events count no more.
      handle.dispose();
      standbyHandle.dispose();
      relay.events.emit('parked', { message: poison, error: new Error('again') });
      const detached = await collect(reader);
      expect(detached.get(metricNames.walOutboxPublished)).toEqual(series(2));
      expect(detached.get(metricNames.walOutboxParked)).toEqual(series(1));
    } finally {
      release();
      handle.dispose();
      standbyHandle.dispose();
      await relay.stop();
      await standby.stop();
      await wal.db.query('DELETE FROM keel_outbox');
      await slot.drop();
    }
  });

  it('refuses a missing db and a bad slot name, naming the field', () => {
    const relay = new WalOutboxRelay(wal.db, { publish: async () => {} }, { connectionString: wal.url });
    const meter = new MeterProvider().getMeter('keel');
    expect(() => instrumentWalOutboxRelay(relay, meter, {} as { db: Db })).toThrow(/db: expected/);
    expect(() => instrumentWalOutboxRelay(relay, meter, { db: wal.db, slotName: 'Bad-Name' })).toThrow(
      /slotName: expected/,
    );
  });
});
