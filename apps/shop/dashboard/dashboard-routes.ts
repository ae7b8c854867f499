import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Queryable } from '../../../src/db/index.ts';
import type { DepthSource } from '../../../src/observability/index.ts';
import { outboxStatus } from '../../../src/outbox/index.ts';
import { countSagasByState } from '../../../src/saga/index.ts';
import type { ServiceHealth } from '../../../src/service/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import { listProcesses, type ProcessIdentity } from '../processes/processes-store.ts';
import { readSchedules } from '../../../src/schedule/schedule-store.ts';
import { DashboardFeed } from './dashboard-feed.ts';
import { dashboardCss, dashboardHtml } from './dashboard-page.ts';
import { dashboardScript } from './dashboard-script.ts';
import { buildDashboardSnapshot, type BreakerSource } from './dashboard-snapshot.ts';
import { RouteLatency } from './route-latency.ts';

export interface DashboardRoutesOptions {
  /** Where the outbox and the saga instances are counted, and the processes' rows read (`processes`). */
  db: Queryable;
  /**
   * Depth and lag of the queues' destinations (`PgQueue`). Absent when the queues run on another
   * broker, whose own console shows them: the page then lists no queues.
   */
  queue?: Required<DepthSource>;
  /** Destinations to show, each with its `<name>.dead-letter`. */
  queues: readonly string[];
  clock: Clock;
  /**
   * This process's circuit breakers, read at each snapshot: `{ name, state }` with the state as a
   * word or a breaker's `CircuitState` (so `() => [payments.breaker]` will do). Other processes'
   * come from their rows in `processes`. Default: none.
   */
  breakers?: () => readonly BreakerSource[];
  /**
   * This process's row in `processes` (its `ProcessHeartbeat.id`): its breakers are shown from
   * `breakers` rather than from the row, which is up to a beat old. Default: none, when the
   * process keeps no row.
   */
  processId?: string;
  /**
   * Who this process is (its `ProcessHeartbeat.identity()`), with `processId`: while its row is
   * not in `processes` (its first beat failed) or `processes` cannot be read (the database down:
   * it then shows alone), its row is shown from this, with its `parts` read now, rather than not
   * at all. Default: none, and it shows only from its row.
   */
  identity?: () => ProcessIdentity;
  /**
   * This process's parts' health (`ServiceGroup.healthOfParts`), read at each snapshot and shown
   * on its row in place of what its heartbeat last wrote there (other processes' come from their
   * rows). Default: its row's.
   */
  parts?: () => Readonly<Record<string, ServiceHealth>>;
  /** How often open pages get a snapshot, and how long one is cached. Default 1000 ms. */
  intervalMs?: number;
  /** How far back the latency percentiles look. Default 60 000 ms. */
  latencyWindowMs?: number;
}

const prefix = '/dashboard';
// The page loads only its own script and style, and talks only to its own origin. Its icon is
// an empty data: URL, or the browser asks for /favicon.ico and logs the 404 as an error.
const contentSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'";

/**
 * `GET /dashboard`: a page of the shop's queues, outbox, sagas, processes and their parts' health,
 * every live process's breakers and this process's HTTP latency, kept live by
 * `GET /dashboard/events` (Server-Sent Events: a snapshot at once, then one a second);
 * `GET /dashboard/state` is the same snapshot as JSON. Like `/metrics`, it is meant for operators: expose it only where they are.
 *
 * It sees every route of the app it is registered on (it skips fastify's encapsulation), to time
 * them: latency is measured here rather than read back from `instrumentHttp`'s histogram, which
 * exists only when an OpenTelemetry SDK is registered, counts since the process started (no
 * recent window) and keeps coarse buckets; reading it in-process would also need a metric
 * reader of our own. Durations are fastify's `reply.elapsedTime` (high-resolution: the
 * millisecond clock would round most requests to 0 or 1 ms); the window moves on `clock`.
 */
export const dashboardRoutes: FastifyPluginAsync<DashboardRoutesOptions> = Object.assign(
  async (app: FastifyInstance, options: DashboardRoutesOptions): Promise<void> => {
    const { db, queue, queues, clock } = options;
    const breakers = options.breakers ?? (() => []);
    const latency = new RouteLatency({ clock, windowMs: options.latencyWindowMs ?? 60_000 });
    const feed = new DashboardFeed(
      () =>
        buildDashboardSnapshot({
          clock,
          queue,
          queues,
          outbox: () => outboxStatus(db, clock),
          sagas: () => countSagasByState(db),
          processes: () => listProcesses(db),
          schedules: () => readSchedules(db),
          ...(options.processId === undefined ? {} : { self: options.processId }),
          ...(options.parts === undefined ? {} : { parts: options.parts }),
          ...(options.identity === undefined ? {} : { identity: options.identity }),
          breakers,
          latency: () => latency.stats(),
        }),
      { clock, intervalMs: options.intervalMs ?? 1000 },
    );

    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url;
      // Not its own routes (an event stream's "duration" is how long a page stayed open), nor
      // URLs that match no route: a row per route template, never per path someone tried.
      if (route !== undefined && route !== prefix && !route.startsWith(`${prefix}/`)) {
        latency.record(`${request.method} ${route}`, reply.elapsedTime);
      }
      done();
    });

    const streams = new Set<PassThrough>();
    // Open event streams would hold app.close() until the drain deadline: end them first.
    app.addHook('preClose', (done) => {
      feed.close();
      for (const stream of streams) stream.end();
      done();
    });

    app.get(prefix, async (_request, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', contentSecurityPolicy)
        .header('cache-control', 'no-cache')
        .send(dashboardHtml),
    );
    app.get(`${prefix}/dashboard.js`, async (_request, reply) =>
      reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(dashboardScript),
    );
    app.get(`${prefix}/dashboard.css`, async (_request, reply) =>
      reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send(dashboardCss),
    );
    app.get(`${prefix}/state`, async (_request, reply) =>
      reply.header('cache-control', 'no-store').send(await feed.latest()),
    );
    app.get(`${prefix}/events`, async (_request, reply) => {
      const stream = new PassThrough();
      streams.add(stream);
      // A page that reconnects after a restart should not wait EventSource's default 3 s.
      stream.write('retry: 1000\n\n');
      const subscription = feed.subscribe((snapshot) => {
        // Each snapshot supersedes the last: a reader that is behind skips some rather than
        // have them pile up in memory.
        if (!stream.writableNeedDrain) stream.write(`data: ${JSON.stringify(snapshot)}\n\n`);
      });
      const end = (): void => {
        subscription.dispose();
        streams.delete(stream);
      };
      reply.raw.once('close', end);
      stream.once('close', end);
      return reply
        .type('text/event-stream; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-accel-buffering', 'no')
        .send(stream);
    });
  },
  {
    // Hooks and routes on the app it is registered on, not in a context of their own.
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: 'keel-shop-dashboard',
  },
);
