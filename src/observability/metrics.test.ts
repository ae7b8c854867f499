import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Meter } from '@opentelemetry/api';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { createEnvelope, PgQueue, pgQueueMigrations } from '../messaging/index.ts';
import { addToOutbox, outboxMigrations } from '../outbox/index.ts';
import { circuitBreaker, retry, timeout } from '../resilience/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff } from '../time/index.ts';
import {
  instrumentConsumer,
  instrumentHttp,
  instrumentOutbox,
  instrumentPolicies,
  instrumentQueueDepth,
  instrumentRuntime,
  metricsRoute,
  prometheusContentType,
  setupObservability,
  tracedHandler,
  type Observability,
} from './index.ts';

let otel: Observability;
let meter: Meter;
let db: TestDb;

beforeAll(async () => {
  otel = setupObservability({ serviceName: 'metrics-test', prometheus: true });
  meter = otel.meterProvider.getMeter('keel');
  db = await createTestDb({ schemaPrefix: 'otelm' });
  await migrate(db, [...pgQueueMigrations, ...outboxMigrations]);
});
afterAll(async () => {
  await db.close();
  await otel.shutdown();
});

/** Runs some traffic through every instrumented part and returns one scrape of `/metrics`. */
async function scrape(): Promise<{ body: string; contentType: string | undefined }> {
  const app = Fastify();
  instrumentHttp(app, { meter });
  metricsRoute(app, otel.prometheus!);
  app.get('/v1/orders/:id', async () => ({ ok: true }));
  await app.inject({ method: 'GET', url: '/v1/orders/123' });
  await app.inject({ method: 'GET', url: '/v1/orders/456' });
  await app.inject({ method: 'GET', url: '/nope' });

  const queue = new PgQueue(db);
  await queue.publish('work', [createEnvelope({ type: 'w.v1', payload: {} })]);
  await queue.publish('idle', [createEnvelope({ type: 'w.v1', payload: {} })]);
  const consumer = queue.consumer(
    'work',
    tracedHandler(
      async (_m, { attempt }) => {
        if (attempt === 1) throw new Error('once');
      },
      { destination: 'work', meter },
    ),
    { pollIntervalMs: 20, retryDelay: () => 1 },
  );
  instrumentConsumer(consumer, meter, 'work');
  const handled = consumer.events.once('handled');
  await consumer.start();
  await handled;
  await consumer.stop();
  instrumentQueueDepth(queue, ['work', 'idle'], meter);
  await db.transaction((tx) => addToOutbox(tx, 'later', createEnvelope({ type: 'w.v1', payload: {} })));
  instrumentOutbox(db, meter);
  const runtime = instrumentRuntime(meter);

  const retries = retry({ maxAttempts: 3, backoff: constantBackoff(0) });
  const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 1 } });
  instrumentPolicies(
    { payment: retries, 'payment-breaker': breaker, 'payment-timeout': timeout(1000) },
    meter,
  );
  let calls = 0;
  await retries.execute(async () => {
    if (++calls < 3) throw new Error('flaky');
  });
  await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => undefined);
  await breaker.execute(async () => 'never').catch(() => undefined);

  const response = await app.inject({ method: 'GET', url: '/metrics' });
  runtime.dispose();
  await app.close();
  expect(response.statusCode).toBe(200);
  return { body: response.body, contentType: String(response.headers['content-type']) };
}

let scraped: Promise<{ body: string; contentType: string | undefined }> | undefined;
const once = (): Promise<{ body: string; contentType: string | undefined }> => (scraped ??= scrape());

describe('/metrics', () => {
  it('serves the Prometheus text format 0.0.4 with histograms per route and the gauges', async () => {
    const { body, contentType } = await once();
    expect(contentType).toBe(prometheusContentType);
    const lines = body.split('\n');
    const has = (pattern: RegExp): boolean => lines.some((line) => pattern.test(line));
    // Per route template, never the raw URL.
    expect(
      has(/^http_server_request_duration_bucket\{.*http_route="\/v1\/orders\/:id".*le="0\.005"\} /),
    ).toBe(true);
    expect(has(/^http_server_request_duration_count\{.*http_route="\/v1\/orders\/:id".*\} 2$/)).toBe(true);
    expect(has(/http_route="unmatched".*http_response_status_code="404"/)).toBe(true);
    expect(body).not.toContain('/v1/orders/123');
    expect(
      has(/^keel_handler_duration_bucket\{.*messaging_destination_name="work".*keel_outcome="error"/),
    ).toBe(true);
    expect(has(/^keel_consumer_handled_total\{.*messaging_destination_name="work".*\} 1$/)).toBe(true);
    expect(has(/^keel_consumer_retried_total\{.*\} 1$/)).toBe(true);
    expect(has(/^keel_queue_depth\{.*messaging_destination_name="idle".*\} 1$/)).toBe(true);
    expect(has(/^keel_queue_depth\{.*messaging_destination_name="work".*\} 0$/)).toBe(true);
    // 'idle' holds one due message nobody consumes; 'work' is drained.
    expect(has(/^keel_queue_lag\{.*messaging_destination_name="idle".*\} [0-9.e-]+$/)).toBe(true);
    expect(has(/^keel_queue_lag\{.*messaging_destination_name="work".*\} 0$/)).toBe(true);
    expect(has(/^keel_outbox_backlog\{.*\} 1$/)).toBe(true);
    expect(has(/^keel_outbox_oldest_unpublished_age\{.*\} [0-9.e-]+$/)).toBe(true);
    expect(has(/^keel_policy_retries_total\{.*keel_policy="payment".*\} 2$/)).toBe(true);
    expect(has(/^keel_policy_rejections_total\{.*keel_policy="payment-breaker".*\} 1$/)).toBe(true);
    expect(has(/^v8js_memory_heap_used\{.*\} [0-9.e+]+$/)).toBe(true);
    expect(has(/^nodejs_eventloop_delay_p99\{.*\} [0-9.e+-]+$/)).toBe(true);
    expect(has(/^keel_breaker_state\{.*keel_policy="payment-breaker".*\} 2$/)).toBe(true);
    expect(has(/^keel_breaker_transitions_total\{.*keel_breaker_state="open".*\} 1$/)).toBe(true);
  });

  it('parses as Prometheus text: every sample belongs to a declared family, histogram series are complete', async () => {
    const { body } = await once();
    expect(body.endsWith('\n')).toBe(true);
    const types = new Map<string, string>();
    for (const line of body.split('\n')) {
      if (line === '' || line.startsWith('# HELP ')) continue;
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type) {
        expect(types.has(type[1]!), `family ${type[1]} declared twice`).toBe(false);
        types.set(type[1]!, type[2]!);
        continue;
      }
      if (line.startsWith('#')) continue;
      const sample =
        /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$/.exec(
          line,
        );
      expect(sample, `not a sample line: ${line}`).not.toBeNull();
      const name = sample![1]!;
      expect(Number.isNaN(Number(sample![3])) && sample![3] !== 'NaN', `value of ${line}`).toBe(false);
      const family = [name, name.replace(/_(bucket|sum|count|total)$/, '')].find((n) => types.has(n));
      expect(family, `sample ${name} has no # TYPE`).toBeDefined();
    }
    for (const [family, type] of types) {
      if (type !== 'histogram') continue;
      expect(body).toContain(`${family}_sum`);
      expect(body).toContain(`${family}_count`);
      expect(body).toMatch(new RegExp(`${family}_bucket\\{[^}]*le="\\+Inf"\\}`));
    }
  });

  const promtool = process.env.KEEL_PROMTOOL ?? '/usr/bin/promtool';
  const havePromtool = existsSync(promtool);
  // CI installs Debian's prometheus package (.ci/run); locally it may be absent.
  it.skipIf(!havePromtool && process.env.CI !== 'true')(
    `passes promtool check metrics${havePromtool ? '' : ' (skipped: promtool not installed; apt-get install prometheus)'}`,
    async () => {
      const { body } = await once();
      const dir = await mkdtemp(join(tmpdir(), 'keel-promtool-'));
      try {
        const file = join(dir, 'metrics.txt');
        await writeFile(file, body);
        const run = promisify(execFile);
        // promtool reads the exposition from stdin; a shell keeps the call one line.
        const { stdout, stderr } = await run('sh', ['-c', `"${promtool}" check metrics < "${file}"`]).catch(
          (error: { stdout: string; stderr: string; code: number }) => {
            throw new Error(`promtool check metrics failed (${error.code}):\n${error.stdout}${error.stderr}`);
          },
        );
        // Lint findings (naming advice) are printed without failing: keep the output for review.
        expect(`${stdout}${stderr}`).toBe('');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
