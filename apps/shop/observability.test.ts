import { SpanKind, type Meter } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/index.ts';
import { setupObservability, type Observability } from '../../src/observability/index.ts';
import { outboxStatus } from '../../src/outbox/index.ts';
import { systemClock } from '../../src/time/index.ts';
import { buildShop } from './app.ts';
import { ordersQueue } from './contracts/orders.ts';
import { instrumentShop } from './observability.ts';
import { shopMigrations } from './presets/open-shop.ts';
import { createShopStore, fulfilmentFinished, testShopConfig, type ShopStore } from './test/test-shop.ts';

const exporter = new InMemorySpanExporter();
let otel: Observability;
let meter: Meter;
let store: ShopStore;

beforeAll(async () => {
  otel = setupObservability({
    serviceName: 'shop-test',
    prometheus: true,
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  meter = otel.meterProvider.getMeter('keel');
  store = await createShopStore();
});
afterAll(async () => {
  await store.dispose();
  await otel.shutdown();
});

describe('shop observability', () => {
  it('one order through api, outbox, relay and worker is one trace; /metrics shows it', async () => {
    const db = await store.open();
    await migrate(db, await shopMigrations());
    const shop = buildShop(testShopConfig(['worker', 'relay']), {
      db,
      clock: systemClock,
      logger: pino({ level: 'silent' }),
      meter,
    });
    using _instrumented = instrumentShop(shop, { meter, prometheus: otel.prometheus! });
    await shop.start();
    try {
      const handled = shop.worker!.events.once('handled');
      const response = await shop.http.inject({
        method: 'POST',
        url: '/v1/orders',
        payload: { customerId: 'c-1', items: [{ sku: 'book-1', quantity: 2 }] },
        headers: { 'idempotency-key': 'trace-order-1' },
      });
      expect(response.statusCode).toBe(202);
      await handled;
      await fulfilmentFinished(shop, response.json<{ id: string }>().id);
      // The saga's last step wrote the order's outcome into the outbox: wait for the relay.
      await expect.poll(async () => (await outboxStatus(shop.db)).backlog).toBe(0);

      const spans = exporter.getFinishedSpans();
      const one = (name: string): ReadableSpan => {
        const found = spans.filter((s) => s.name === name);
        expect(found, `spans named ${name}: ${spans.map((s) => s.name).join(', ')}`).toHaveLength(1);
        return found[0]!;
      };
      const route = one('POST /v1/orders');
      // Two events went into the outbox: the order's, in the route's span, and its outcome, in
      // the span of the saga's last step, which wrote it.
      const adds = spans.filter((s) => s.name === 'outbox.add');
      expect(adds).toHaveLength(2);
      const add = adds.find((s) => s.parentSpanContext?.spanId === route.spanContext().spanId)!;
      const outcome = adds.find((s) => s !== add)!;
      expect(outcome.parentSpanContext?.spanId).toBe(
        one('saga order-fulfilment confirm-order').spanContext().spanId,
      );
      const publish = one(`${ordersQueue} publish`);
      const process = one(`${ordersQueue} process`);
      const traceId = route.spanContext().traceId;
      for (const span of [add, publish, process]) expect(span.spanContext().traceId).toBe(traceId);
      expect(route.kind).toBe(SpanKind.SERVER);
      expect(route.attributes).toMatchObject({
        'http.route': '/v1/orders',
        'http.response.status_code': 202,
      });
      expect(add.parentSpanContext?.spanId).toBe(route.spanContext().spanId);
      expect(publish.kind).toBe(SpanKind.PRODUCER);
      expect(process.kind).toBe(SpanKind.CONSUMER);
      // The event was created inside the route's span: the worker's span is its child.
      expect(process.parentSpanContext?.spanId).toBe(route.spanContext().spanId);
      // The worker's saga runner: one span per step it ran.
      for (const step of ['accept-order', 'reserve-stock', 'take-payment', 'confirm-order']) {
        expect(one(`saga order-fulfilment ${step}`).kind).toBe(SpanKind.INTERNAL);
      }

      const metrics = await shop.http.inject({ url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toMatch(
        /^http_server_request_duration_count\{.*http_route="\/v1\/orders".*\} 1$/m,
      );
      expect(metrics.body).toMatch(/^keel_handler_duration_count\{.*keel_outcome="success".*\} 1$/m);
      expect(metrics.body).toMatch(/^keel_consumer_handled_total\{.*\} 1$/m);
      expect(metrics.body).toMatch(/^keel_outbox_backlog\{.*\} 0$/m);
      expect(metrics.body).toMatch(/^keel_saga_step_duration_count\{.*keel_saga_step="take-payment".*\} 1$/m);
      expect(metrics.body).toMatch(/^keel_saga_instances\{.*keel_saga_state="COMPLETED".*\} 1$/m);
      expect(metrics.body).toMatch(
        /^keel_queue_depth\{.*messaging_destination_name="shop\.orders".*\} \d+$/m,
      );
    } finally {
      await shop.stop();
    }
  });

  it('a process without the api role serves /metrics and health on KEEL_METRICS_PORT, and no orders', async () => {
    const db = await store.open();
    await migrate(db, await shopMigrations());
    const shop = buildShop(
      { ...testShopConfig(['worker']), metricsPort: 0 },
      { db, clock: systemClock, logger: pino({ level: 'silent' }), meter },
    );
    using _instrumented = instrumentShop(shop, { meter, prometheus: otel.prometheus! });
    await shop.start();
    try {
      expect(shop.server).toBeUndefined();
      const address = shop.ops!.address;
      const metrics = await fetch(`${address}/metrics`);
      expect(metrics.status).toBe(200);
      // The worker's own series, which no api process has.
      expect(await metrics.text()).toMatch(/^keel_saga_instances\{/m);
      expect((await fetch(`${address}/readyz`)).status).toBe(200);
      const order = await fetch(`${address}/v1/orders`, { method: 'POST', body: '{}' });
      expect(order.status).toBe(404);
    } finally {
      await shop.stop();
    }
  });
});
