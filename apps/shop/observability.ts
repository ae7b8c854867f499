import type { Meter } from '@opentelemetry/api';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  instrumentConsumer,
  instrumentHttp,
  instrumentOutbox,
  instrumentPolicies,
  instrumentWalOutboxRelay,
  instrumentQueueDepth,
  instrumentRuntime,
  instrumentSagas,
  instrumentServiceHealth,
  metricsRoute,
  setupObservability,
  type Observability,
} from '../../src/observability/index.ts';
import type { ListenerHandle } from '../../src/service/index.ts';
import type { Shop } from './app.ts';
import { ordersQueue } from './contracts/orders.ts';
import { notificationsQueue } from './contracts/notifications.ts';

export interface ShopObservabilityOptions {
  /** Where the shop's metrics go: the meter of the registered `MeterProvider`. */
  meter: Meter;
  /** Serves `/metrics` on the shop's HTTP app when given. */
  prometheus?: PrometheusExporter;
}

/**
 * Instruments a built, not yet started, shop: a span and a latency histogram per HTTP route,
 * `/metrics`, the worker's counters, the outbox and queue gauges (and the WAL outbox's, with
 * `KEEL_OUTBOX=wal`), event-loop delay and heap,
 * and, with the worker role, a span per saga step run and the saga metrics.
 * The worker's handler span and the relay's publish span are part of `buildShop` itself
 * (no-ops until an SDK is registered); pass `meter` in the shop's deps for handler durations.
 * Dispose the handle to stop the gauges and the event-loop monitor.
 */
export function instrumentShop(shop: Shop, options: ShopObservabilityOptions): ListenerHandle {
  const { meter } = options;
  instrumentHttp(shop.http, { meter });
  if (options.prometheus !== undefined) {
    metricsRoute(shop.http, options.prometheus);
    if (shop.ops !== undefined) metricsRoute(shop.ops.app, options.prometheus);
  }
  const handles: ListenerHandle[] = [
    instrumentOutbox(shop.db, meter),
    instrumentRuntime(meter),
    instrumentServiceHealth(() => shop.healthOfParts(), meter),
  ];
  // Other brokers show their depth in their own tools (the RabbitMQ console, Kafka's lag).
  if (shop.depths !== undefined)
    handles.push(instrumentQueueDepth(shop.depths, [ordersQueue, notificationsQueue], meter));
  if (Object.keys(shop.policies).length > 0) handles.push(instrumentPolicies(shop.policies, meter));
  if (shop.notifications !== undefined)
    handles.push(instrumentConsumer(shop.notifications, meter, notificationsQueue));
  if (shop.walRelay !== undefined)
    handles.push(instrumentWalOutboxRelay(shop.walRelay, meter, { db: shop.db }));
  if (shop.worker !== undefined) handles.push(instrumentConsumer(shop.worker, meter, ordersQueue));
  if (shop.sagas !== undefined) handles.push(instrumentSagas(shop.sagas, { meter, db: shop.db }));
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
  };
  return { dispose, [Symbol.dispose]: dispose };
}

/**
 * The shop's SDK from its environment (12-factor): OTLP/HTTP trace export when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`/v1/traces` appended, as the OTLP spec says for the
 * base endpoint), spans on stdout when `KEEL_TRACE_CONSOLE=1`, and a Prometheus reader for
 * `/metrics` always. Call once per process, before `buildShop`; `shutdown()` on exit.
 */
export function shopObservabilityFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
  serviceName = 'shop',
): Observability {
  const endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return setupObservability({
    serviceName: env.OTEL_SERVICE_NAME?.trim() || serviceName,
    prometheus: true,
    ...(endpoint ? { otlp: `${endpoint.replace(/\/+$/, '')}/v1/traces` } : {}),
    console: env.KEEL_TRACE_CONSOLE === '1',
  });
}
