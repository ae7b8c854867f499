import type { FastifyInstance } from 'fastify';
import type { Meter } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { ReadYourWritesDb } from '../../src/consistency/index.ts';
import type { Db } from '../../src/db/index.ts';
import { PgQueue, type MessageBroker, type QueueConsumer } from '../../src/messaging/index.ts';
import type { DepthSource, NamedPolicies } from '../../src/observability/index.ts';
import { CircuitBreakerPolicy } from '../../src/resilience/index.ts';
import { HttpPaymentProvider } from './payments/http-payment-provider.ts';
import { SmtpMailer } from './notifications/smtp-mailer.ts';
import { tracedHandler, tracedPublisher } from '../../src/observability/index.ts';
import {
  OutboxRelay,
  WalOutboxRelay,
  addToOutbox,
  addToWalOutbox,
  ensureWalOutboxSlot,
} from '../../src/outbox/index.ts';
import { SagaRunner, pruneSagas } from '../../src/saga/index.ts';
import { ServiceBase, ServiceGroup, type Service, type ServiceHealth } from '../../src/service/index.ts';
import type { TokenBucketLimits } from '../../src/resilience/index.ts';
import type { Clock } from '../../src/time/index.ts';
import { orderFulfilment } from './application/fulfilment.ts';
import { ShopFlags } from './flags.ts';
import { PaymentProvider } from './application/payment-provider.ts';
import type { Payments } from './application/payments.ts';
import { ordersQueue } from './contracts/orders.ts';
import { contractRoutes } from './transport/http/contract-routes.ts';
import { healthRoutes } from './transport/http/health-routes.ts';
import { HttpServer } from './transport/http/http-server.ts';
import { ordersRoutes } from './transport/http/orders-routes.ts';
import { dashboardRoutes } from './dashboard/dashboard-routes.ts';
import { ProcessHeartbeat } from './processes/process-heartbeat.ts';
import { partsHealthReport } from './processes/parts-health.ts';
import { logWalRelayEvents } from './wal-relay-log.ts';
import { ExpiredKeyPruner, PostgresIdempotencyStore } from '../../src/idempotency/index.ts';
import { createHttpApp } from './transport/http/http-app.ts';
import { installRateLimit } from './transport/http/rate-limit.ts';
import { installApiKeyAuth } from './transport/http/api-key-auth.ts';
import { orderPlacedHandler } from './transport/messages/order-placed-handler.ts';
import { notificationsHandler } from './transport/messages/notifications-handler.ts';
import { notificationsRouting } from './transport/messages/notifications-routing.ts';
import { accountsRoutes } from './transport/http/accounts-routes.ts';
import { notificationsQueue } from './contracts/notifications.ts';
import { mailConfigFromEnv, openMailer, type MailConfig } from './notifications/mail-config.ts';
import type { Mailer } from './notifications/mailer.ts';
import { analyticsRoutes } from './analytics/analytics-routes.ts';
import { pgOrderStream, type OrderAnalyticsRunner, type OrderStream } from './analytics/order-stream.ts';
import { orderStreamPublisher } from './analytics/order-stream-publisher.ts';
import { dailySalesScheduler } from './analytics/daily-sales-scheduler.ts';
import type { DailySalesConfig } from './analytics/daily-sales.ts';

/** The parts one process runs. The all-in-one runs all three; split deployments one each. */
export type ShopRole = 'api' | 'worker' | 'relay';

/**
 * Where orders' events go: the table outbox (any backend), or the WAL outbox — logical messages
 * relayed by logical decoding from `connectionString` (PostgreSQL with wal_level=logical).
 */
export type ShopOutbox = { kind: 'table' } | { kind: 'wal'; connectionString: string };

export interface ShopConfig {
  roles: ReadonlySet<ShopRole>;
  /**
   * Where the API listens, and the ms a client has to send a whole request (408 after it; 0: no
   * limit but node's 60 s on the headers).
   */
  http: { port: number; host: string; requestTimeoutMs?: number };
  /**
   * A process without the api role listens here for `/metrics`, `/healthz` and `/readyz` only,
   * so Prometheus can scrape its worker and saga metrics. None when absent.
   */
  metricsPort?: number;
  worker: { concurrency: number; pollIntervalMs: number; leaseMs: number };
  relay: { pollIntervalMs: number; batchSize: number; claimMs?: number };
  /** Default: the table outbox. */
  outbox?: ShopOutbox;
  /** A token bucket per client (API key, else address) on the API's routes; none when absent. */
  rateLimit?: TokenBucketLimits;
  /** `required`: every `/v1/…` request carries a live API key (`api_keys`). Default: none asked. */
  apiKeys?: 'required' | 'off';
  /**
   * The worker deletes order-stream events older than this that analytics has applied (on the
   * PostgreSQL stream; a Kafka topic keeps its own `retention.ms`). Default: kept for good.
   */
  streamRetentionMs?: number;
  /** Where the worker's notifications send mail, when `ShopDeps.mailer` is not given. Default: `./.keel/mailbox`. */
  mail?: MailConfig;
  /** When the worker closes each day's sales (`daily_sales`); never when absent. */
  dailySales?: DailySalesConfig;
}

export interface ShopDeps {
  /** Migrated and open; the shop closes it when it stops. */
  db: Db;
  clock: Clock;
  logger: Logger;
  /** Measures handler durations (`keel.handler.duration`). Default: none. Spans need no option. */
  meter?: Meter;
  /** The payment provider the fulfilment saga charges. Default: the shop's own, on `db`. */
  payments?: Payments;
  /** Where the worker's notifications send mail. Default: from `config.mail`. Closed on stop. */
  mailer?: Mailer;
  /**
   * Where the shop's queues run (`shop.orders`, `shop.notifications`): RabbitMQ, Kafka, NATS,
   * Redis… Default: keel's PostgreSQL queue on `db`. Closed on stop, after the consumers.
   */
  broker?: MessageBroker;
  /**
   * A streaming standby of `db` for `GET /v1/orders/:id`; a read carrying a `Consistency-Token`
   * goes to it only once it has replayed that far. Default: none, every read from `db`. Closed on stop.
   */
  replica?: Db;
  /**
   * Where the order stream lives (the analytics model replays it). Default: keel's PostgreSQL
   * stream in `db`; with the queues on Kafka, `openShop` gives the topic (`kafkaOrderStream`).
   */
  orderStream?: OrderStream;
}

export interface Shop extends Service {
  /** The fastify app, ready for `inject()` in tests, whether or not the api role listens. */
  readonly http: FastifyInstance;
  readonly server: HttpServer | undefined;
  readonly relay: OutboxRelay | undefined;
  /** With the WAL outbox: the relay of orders' events (the table relay still carries the sagas' messages and parked ones). */
  readonly walRelay: WalOutboxRelay | undefined;
  readonly worker: QueueConsumer | undefined;
  /** The worker role's runner of the order-fulfilment saga. */
  readonly sagas: SagaRunner | undefined;
  /** Where the shop's queues run: `ShopDeps.broker`, else keel's PostgreSQL queue on `db`. */
  readonly queue: MessageBroker;
  /** Depth and lag of the shop's queues, when they run on the PostgreSQL queue (other brokers have their own tools). */
  readonly depths: Required<DepthSource> | undefined;
  /** The resilience policies of this process's outgoing calls (payment provider, SMTP), by name. */
  readonly policies: NamedPolicies;
  /** This process's row in `processes` (roles, liveness, breakers), which every api's dashboard reads. */
  readonly heartbeat: ProcessHeartbeat;
  /** The api role's feature flags (`orders.accepting`). */
  readonly flags: ShopFlags | undefined;
  /** Without the api role, with `metricsPort`: the listener of health and metrics (instrumentShop adds `/metrics`). */
  readonly ops: HttpServer | undefined;
  /** The database the shop owns and closes on stop. */
  readonly db: Db;
  /** The worker role's analytics projection over the order stream (`GET /v1/analytics/orders`). */
  readonly analytics: OrderAnalyticsRunner | undefined;
  /** The worker role's consumer of `shop.notifications`: the mail sent to customers. */
  readonly notifications: QueueConsumer | undefined;
  /** The health of each part that reports one (relays, consumers, runners…), by name: `/readyz` lists it. */
  healthOfParts(): Record<string, ServiceHealth>;
}

/**
 * Builds every part of the shop for the given roles and starts none. Start order: database
 * (already open), saga runner, worker, relay, then the HTTP listener last, so traffic arrives
 * only when everything behind it runs; stop runs in reverse, so the listener closes first and
 * the worker stops starting sagas before the runner drains the steps it is running.
 */
export function buildShop(config: ShopConfig, deps: ShopDeps): Shop {
  const { db, clock, logger } = deps;
  // Closed last, after everything that uses it has stopped.
  const pgQueue = deps.broker === undefined ? new PgQueue(db, { clock }) : undefined;
  const queue: MessageBroker = deps.broker ?? pgQueue!;
  const parts: Service[] = [new Closer('db', () => db.close())];
  const replica = deps.replica;
  if (replica !== undefined) parts.push(new Closer('replica', () => replica.close()));
  parts.push(new Closer('broker', () => queue.close()));
  // Waiting a little for the replica is cheaper for the primary than falling back at once.
  const reads = new ReadYourWritesDb({ primary: db, replica: deps.replica, maxReplicaWaitMs: 50, clock });
  let ready = false;

  let worker: QueueConsumer | undefined;
  let sagas: SagaRunner | undefined;
  let analytics: OrderAnalyticsRunner | undefined;
  const orderStream = deps.orderStream ?? pgOrderStream;
  const closeOrderStream = orderStream.close?.bind(orderStream);
  if (closeOrderStream !== undefined) parts.push(new Closer('order stream', closeOrderStream));
  let notifications: QueueConsumer | undefined;
  // The resilience policies this process calls through, by name: for metrics and the dashboard.
  const policies: Record<string, NamedPolicies[string]> = {};
  if (deps.payments instanceof HttpPaymentProvider) {
    policies['payment-provider'] = deps.payments.policies.breaker;
    policies['payment-provider.retry'] = deps.payments.policies.retry;
    policies['payment-provider.timeout'] = deps.payments.policies.timeout;
  }
  // Started before the parts whose breakers it writes and stopped after them, so the row says
  // a process is gone only once it is; it reads `policies` at start, when they are all there,
  // and its parts' health at each beat (the group is built below, before it starts).
  const heartbeat = new ProcessHeartbeat({
    db,
    clock,
    roles: config.roles,
    policies,
    health: () => partsHealthReport(healthOfParts()),
  });
  heartbeat.events.on('error', ({ error, during }) =>
    logger.warn({ err: error, during }, 'process heartbeat error'),
  );
  parts.push(heartbeat);
  if (config.roles.has('worker')) {
    const fulfilmentDeps = { db, clock, payments: deps.payments ?? new PaymentProvider(db, { clock }) };
    // New orders start the current version; instances started on version 1 finish on it.
    const fulfilment = orderFulfilment(fulfilmentDeps);
    // The worker's lease, poll and concurrency settings apply to its saga instances too.
    sagas = new SagaRunner({
      db,
      sagas: [orderFulfilment(fulfilmentDeps, 1), fulfilment],
      clock,
      leaseMs: config.worker.leaseMs,
      pollMs: config.worker.pollIntervalMs,
      concurrency: config.worker.concurrency,
    });
    sagas.events.on('error', ({ error, during }) => logger.warn({ err: error, during }, 'saga runner error'));
    sagas.events.on('compensation-failed', ({ instanceId, step, error }) =>
      logger.error({ instanceId, step, error }, 'saga parked: a compensation gave up (keel saga retry)'),
    );
    parts.push(sagas);
    const handler = tracedHandler(orderPlacedHandler(db, clock, fulfilment), {
      destination: ordersQueue,
      meter: deps.meter,
    });
    worker = queue.consumer(ordersQueue, handler, {
      clock,
      concurrency: config.worker.concurrency,
      pollIntervalMs: config.worker.pollIntervalMs,
      leaseMs: config.worker.leaseMs,
      name: 'worker',
    });
    worker.events.on('error', ({ error, during }) => logger.warn({ err: error, during }, 'worker error'));
    worker.events.on('dead-lettered', ({ message, error }) =>
      logger.error({ err: error, messageId: message.id, type: message.type }, 'message dead-lettered'),
    );
    parts.push(worker);
    const mailer = deps.mailer ?? openMailer(config.mail ?? mailConfigFromEnv({}), clock);
    if (mailer instanceof SmtpMailer) policies.smtp = mailer.breaker;
    notifications = notificationsConsumer(queue, config, { ...deps, mailer }, parts);
    analytics = orderStream.analyticsRunner(db, {
      clock,
      pollIntervalMs: config.worker.pollIntervalMs,
      onSkipped: ({ place, envelope }, error) =>
        logger.warn({ err: error, at: place.text, type: envelope.type }, 'analytics skipped an event'),
    });
    analytics.events.on('error', ({ error, during }) =>
      logger.warn({ err: error, during }, 'analytics error'),
    );
    parts.push(analytics);
    const retention =
      config.streamRetentionMs === undefined
        ? undefined
        : orderStream.retention?.(db, { olderThanMs: config.streamRetentionMs, clock });
    if (retention !== undefined) {
      retention.events.on('error', ({ error, during }) =>
        logger.warn({ err: error, during }, 'order stream retention error'),
      );
      parts.push(retention);
    }
    if (config.dailySales !== undefined)
      parts.push(dailySalesScheduler(db, config.dailySales, clock, logger));
  }

  const idempotency = new PostgresIdempotencyStore(db, { clock });
  // Order events reach the order stream too (placed ones teed from the queue's): analytics replays it.
  // Signups and order outcomes reach the notifications queue too: the worker mails customers.
  const relayPublisher = notificationsRouting(
    orderStreamPublisher({ queue, stream: orderStream.appender(db, queue) }),
    queue,
  );
  const outbox = config.outbox ?? { kind: 'table' };
  // The slot must exist before the first event is written: an api process creates it at start,
  // before it listens (a relay process does too, when it starts).
  if (outbox.kind === 'wal' && config.roles.has('api')) parts.push(new WalOutboxSlot(db));
  let walRelay: WalOutboxRelay | undefined;
  if (outbox.kind === 'wal' && config.roles.has('relay')) {
    walRelay = new WalOutboxRelay(db, tracedPublisher(relayPublisher), {
      connectionString: outbox.connectionString,
      clock,
      batchSize: config.relay.batchSize,
    });
    logWalRelayEvents(walRelay.events, logger);
    parts.push(walRelay);
  }
  let relay: OutboxRelay | undefined;
  if (config.roles.has('relay')) {
    relay = new OutboxRelay(db, tracedPublisher(relayPublisher), {
      clock,
      pollIntervalMs: config.relay.pollIntervalMs,
      batchSize: config.relay.batchSize,
      ...(config.relay.claimMs === undefined ? {} : { claimMs: config.relay.claimMs }),
    });
    relay.events.on('error', ({ error, during }) => logger.warn({ err: error, during }, 'relay error'));
    parts.push(relay);
    // The relay role also keeps the idempotency-key table small; expiry itself needs no pruning.
    const pruner = new ExpiredKeyPruner(idempotency, { clock });
    pruner.events.on('error', ({ error }) => logger.warn({ err: error }, 'idempotency pruning failed'));
    parts.push(pruner);
    // Finished saga instances and their history go after 30 days (pruneSagas' default).
    const sagaPruner = new ExpiredKeyPruner(
      { prune: () => pruneSagas(db, { clock }) },
      { clock, name: 'saga-pruner' },
    );
    sagaPruner.events.on('error', ({ error }) => logger.warn({ err: error }, 'saga pruning failed'));
    parts.push(sagaPruner);
  }

  const httpOptions = { requestTimeoutMs: config.http.requestTimeoutMs ?? 0 };
  const http: FastifyInstance = createHttpApp(logger, httpOptions);
  // Before the rate limit, which then counts per key.
  if (config.apiKeys === 'required') installApiKeyAuth(http, { db, clock });
  if (config.rateLimit !== undefined) installRateLimit(http, { limits: config.rateLimit, clock });
  // The group is built below, before any request can arrive.
  const healthOfParts = (): Record<string, ServiceHealth> => group.healthOfParts();
  void http.register(healthRoutes, { db, isReady: () => ready, parts: healthOfParts });
  void http.register(contractRoutes);
  // The api role reads the shop's feature flags; other roles take no orders over HTTP.
  const flags = config.roles.has('api') ? new ShopFlags(db, { clock, logger }) : undefined;
  if (flags !== undefined) parts.push(flags);
  void http.register(analyticsRoutes, { db, stream: orderStream });
  void http.register(accountsRoutes, { db, clock });
  void http.register(ordersRoutes, {
    db,
    reads,
    clock,
    idempotency,
    outbox: outbox.kind === 'wal' ? addToWalOutbox : addToOutbox,
    ...(flags === undefined ? {} : { accepting: () => flags.ordersAccepting }),
  });
  // The live page of queues, outbox, sagas, breakers and latency, beside the API it times.
  if (config.roles.has('api'))
    void http.register(dashboardRoutes, {
      db,
      ...(pgQueue === undefined ? {} : { queue: pgQueue }),
      queues: [ordersQueue, notificationsQueue],
      clock,
      breakers: () => breakersOf(policies),
      processId: heartbeat.id,
      identity: () => heartbeat.identity(),
      parts: healthOfParts,
    });

  let server: HttpServer | undefined;
  let ops: HttpServer | undefined;
  if (config.roles.has('api')) {
    server = new HttpServer(http, config.http);
    parts.push(server);
  } else {
    parts.push(new FastifyCloser(http));
    if (config.metricsPort !== undefined) {
      const app = createHttpApp(logger, httpOptions);
      void app.register(healthRoutes, { db, isReady: () => ready, parts: healthOfParts });
      ops = new HttpServer(app, { port: config.metricsPort, host: config.http.host });
      parts.push(ops);
    }
  }

  const group = new ServiceGroup('shop', parts);
  return {
    name: 'shop',
    http,
    server,
    relay,
    walRelay,
    worker,
    sagas,
    queue,
    depths: pgQueue,
    policies,
    heartbeat,
    flags,
    ops,
    db,
    analytics,
    notifications,
    get state() {
      return group.state;
    },
    healthOfParts,
    async start() {
      await group.start();
      ready = true;
    },
    stop(options) {
      ready = false;
      return group.stop(options);
    },
    [Symbol.asyncDispose]: () => group.stop(),
  };
}

/**
 * The worker's mail: a consumer of `shop.notifications` (welcome and order-outcome events, routed
 * there by the relay) sending through `mailer`, which is closed once the consumer has stopped.
 */
function notificationsConsumer(
  queue: MessageBroker,
  config: ShopConfig,
  deps: ShopDeps & { mailer: Mailer },
  parts: Service[],
): QueueConsumer {
  const { db, clock, logger, mailer } = deps;
  parts.push(new Closer('mailer', () => mailer.close()));
  const handler = tracedHandler(notificationsHandler({ db, clock, mailer }), {
    destination: notificationsQueue,
    meter: deps.meter,
  });
  const consumer = queue.consumer(notificationsQueue, handler, {
    clock,
    concurrency: 2,
    pollIntervalMs: config.worker.pollIntervalMs,
    leaseMs: config.worker.leaseMs,
    // A mail server down for a while: retry for about an hour (1 s doubling to 60 s, 70 tries).
    maxAttempts: 70,
    name: 'notifications',
  });
  consumer.events.on('error', ({ error, during }) =>
    logger.warn({ err: error, during }, 'notifications error'),
  );
  consumer.events.on('retried', ({ message, attempt, error }) =>
    logger.warn({ err: error, messageId: message.id, attempt }, 'mail not sent yet; retrying'),
  );
  consumer.events.on('dead-lettered', ({ message, error }) =>
    logger.error(
      { err: error, messageId: message.id, type: message.type },
      'mail given up (keel queue redrive)',
    ),
  );
  parts.push(consumer);
  return consumer;
}

function breakersOf(policies: NamedPolicies): { name: string; state: CircuitBreakerPolicy['state'] }[] {
  return Object.entries(policies).flatMap(([name, policy]) =>
    policy instanceof CircuitBreakerPolicy ? [{ name, state: policy.state }] : [],
  );
}

/** Runs `close` on stop, once the parts started after it have stopped. */
class Closer extends ServiceBase {
  readonly #close: () => Promise<void>;
  constructor(name: string, close: () => Promise<void>) {
    super(name);
    this.#close = close;
  }
  protected override async onStart(): Promise<void> {}
  protected override async onStop(): Promise<void> {
    await this.#close();
  }
}

/** Creates the WAL outbox's slot at start, if missing: before the api takes its first order. */
class WalOutboxSlot extends ServiceBase {
  readonly #db: Db;
  constructor(db: Db) {
    super('wal-outbox-slot');
    this.#db = db;
  }
  protected override async onStart(): Promise<void> {
    await ensureWalOutboxSlot(this.#db);
  }
  protected override async onStop(): Promise<void> {}
}

/** For processes that do not listen: the app is still built (for inject), and closed on stop. */
class FastifyCloser extends ServiceBase {
  readonly #app: FastifyInstance;
  constructor(app: FastifyInstance) {
    super('http-app');
    this.#app = app;
  }
  protected override async onStart(): Promise<void> {
    await this.#app.ready();
  }
  protected override async onStop(): Promise<void> {
    await this.#app.close();
  }
}
