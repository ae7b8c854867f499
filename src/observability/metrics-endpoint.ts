import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { FastifyInstance } from 'fastify';

/** The Prometheus text exposition format, version 0.0.4. */
export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * A metric reader for the `/metrics` route: register it with the `MeterProvider`
 * (`readers: [reader]`). It never opens a port of its own; the app's server serves it.
 */
export function createPrometheusReader(): PrometheusExporter {
  return new PrometheusExporter({ preventServerStart: true });
}

/**
 * Serves `GET <path>` (default `/metrics`) from a `PrometheusExporter`: each scrape collects
 * every instrument (observable gauges run their queries then) and renders the text format.
 * An instrument whose callback failed is left out of that scrape and named in a comment; the
 * scrape itself still succeeds, so one broken gauge does not blind the whole target.
 */
export function metricsRoute(
  app: FastifyInstance,
  reader: PrometheusExporter,
  options: { path?: string } = {},
): void {
  const serializer = new PrometheusSerializer();
  app.get(options.path ?? '/metrics', async (_request, reply) => {
    const { resourceMetrics, errors } = await reader.collect();
    const comments = errors.map((error) => `# collection error: ${String(error).replace(/\n/g, ' ')}\n`);
    return reply
      .header('content-type', prometheusContentType)
      .send(comments.join('') + serializer.serialize(resourceMetrics));
  });
}
