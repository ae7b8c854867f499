// instrumentWalOutboxRelay against a real PostgreSQL 15 with wal_level=logical (startPgServer),
// read by the OpenTelemetry SDK's own MetricReader: the slot's lag and the relay's buffered
// messages as gauges read at collection, published / publish-failed / parked as counters, one
// series per slot for the relays of that slot.
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.ts';
import { InvalidArgumentError } from '../../src/errors/index.ts';
import { createEnvelope, type Envelope, type Publisher } from '../../src/messaging/index.ts';
import {
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  WalOutboxRelay,
} from '../../src/outbox/index.ts';
import { instrumentWalOutboxRelay, keelAttributes, metricNames } from '../../src/observability/index.ts';
import { startWalOutboxTestServer, type WalOutboxTestServer } from '../../src/testing/index.ts';
import { until } from '../until.ts';

let wal: WalOutboxTestServer;
let db: Db;

beforeAll(async () => {
  wal = await startWalOutboxTestServer();
  db = wal.db;
}, 60_000);

afterAll(async () => {
  await wal?.stop();
});

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

const names = { slotName: 'metrics_slot', publicationName: 'metrics_pub', prefix: 'keel_metrics' };
const counters = [
  metricNames.walOutboxPublished,
  metricNames.walOutboxPublishFailed,
  metricNames.walOutboxParked,
];

describe('instrumentWalOutboxRelay', () => {
  it('reports lag and buffered at collection, and counts published, failed and parked messages', async () => {
    await ensureWalOutboxSlot(db, names);
    const reader = new CollectingReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('keel');

    // The first publish waits for the test; the poison message is refused for what it is.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const poison = createEnvelope({ type: 'test.event.v1', key: 'k', payload: { n: 2 } });
    const received: Envelope[] = [];
    const publisher: Publisher = {
      publish: async (_destination, messages) => {
        await held;
        if (messages.some((m) => m.id === poison.id)) throw new InvalidArgumentError('payload', 'another', 2);
        received.push(...messages);
      },
    };
    const options = {
      connectionString: wal.url,
      reconnectMs: 50,
      retryDelay: () => 10,
      batchSize: 1,
      ...names,
    };
    const relay = new WalOutboxRelay(db, publisher, options);
    // A second relay of the slot, standing by: the same series, not a second one.
    const standby = new WalOutboxRelay(db, publisher, options);
    const handle = instrumentWalOutboxRelay(relay, meter, { db, slotName: names.slotName });
    const standbyHandle = instrumentWalOutboxRelay(standby, meter, { db, slotName: names.slotName });
    try {
      const idle = await collect(reader);
      expect(idle.get(metricNames.walOutboxBuffered)).toEqual({ metrics_slot: 0 });
      expect(idle.get(metricNames.walOutboxLag)!.metrics_slot).toBeGreaterThanOrEqual(0);
      for (const name of counters) expect(idle.has(name), name).toBe(false);

      const message = (n: number, key: string): Envelope =>
        createEnvelope({ type: 'test.event.v1', key, payload: { n } });
      // Another key after the poison one: a later message of its own key would wait behind it.
      await db.transaction((tx) =>
        addToWalOutbox(tx, 'orders', [message(1, 'k'), poison, message(3, 'j')], { prefix: names.prefix }),
      );
      // Nothing streams yet: the slot holds the transaction's WAL.
      expect((await collect(reader)).get(metricNames.walOutboxLag)!.metrics_slot).toBeGreaterThan(0);

      const streaming = relay.events.once('streaming');
      await relay.start();
      await streaming;
      const standingBy = standby.events.once('standby');
      await standby.start();
      await standingBy;
      await until(() => relay.buffered === 3);
      expect((await collect(reader)).get(metricNames.walOutboxBuffered)).toEqual({ metrics_slot: 3 });

      let parked = 0;
      relay.events.on('parked', () => parked++);
      release();
      await until(() => received.length === 2 && parked === 1 && relay.buffered === 0);
      const after = await collect(reader);
      expect(after.get(metricNames.walOutboxPublished)).toEqual({ metrics_slot: 2 });
      // batchSize 1: the poison message failed once, alone, and was parked (a permanent error).
      expect(after.get(metricNames.walOutboxPublishFailed)).toEqual({ metrics_slot: 1 });
      expect(after.get(metricNames.walOutboxParked)).toEqual({ metrics_slot: 1 });
      expect(after.get(metricNames.walOutboxBuffered)).toEqual({ metrics_slot: 0 });

      // Detached: the totals stay, and the relay's events count no more.
      handle.dispose();
      standbyHandle.dispose();
      relay.events.emit('parked', { message: poison, error: new Error('again') });
      const detached = await collect(reader);
      expect(detached.get(metricNames.walOutboxPublished)).toEqual({ metrics_slot: 2 });
      expect(detached.get(metricNames.walOutboxParked)).toEqual({ metrics_slot: 1 });
    } finally {
      release();
      handle.dispose();
      standbyHandle.dispose();
      await relay.stop();
      await standby.stop();
      await db.query('DELETE FROM keel_outbox');
      await dropWalOutboxSlot(db, names);
    }
  });

  it('refuses a missing db and a bad slot name, naming the field', () => {
    const relay = new WalOutboxRelay(db, { publish: async () => {} }, { connectionString: wal.url });
    const meter = new MeterProvider().getMeter('keel');
    expect(() => instrumentWalOutboxRelay(relay, meter, {} as { db: Db })).toThrow(/db: expected/);
    expect(() => instrumentWalOutboxRelay(relay, meter, { db, slotName: 'Bad-Name' })).toThrow(
      /slotName: expected/,
    );
  });
});
