import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Meter } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { ReadYourWritesDb } from '../../src/consistency/index.ts';
import type { Db } from '../../src/db/index.ts';
import { PgQueue, type QueueConsumer } from '../../src/messaging/index.ts';
import { tracedHandler, tracedPublisher } from '../../src/observability/index.ts';
import {
  OutboxRelay,
  WalOutboxRelay,
  addToOutbox,
  addToWalOutbox,
  ensureWalOutboxSlot,
} from '../../src/outbox/index.ts';
import { SagaRunner, pruneSagas } from '../../src/saga/index.ts';
import { ServiceBase, ServiceGroup, type Service } from '../../src/service/index.ts';
import type { TokenBucketLimits } from '../../src/resilience/index.ts';
import type { Clock } from '../../src/time/index.ts';
import { orderFulfilment } from './application/fulfilment.ts';
import { ShopFlags } from './flags.ts';
import { PaymentProvider } from './application/payment-provider.ts';
import { ordersQueue } from './contracts/orders.ts';
import { healthRoutes } from './transport/http/health-routes.ts';
import { HttpServer } from './transport/http/http-server.ts';
import { ordersRoutes } from './transport/http/orders-routes.ts';
import { ExpiredKeyPruner, PostgresIdempotencyStore } from '../../src/idempotency/index.ts';
import { installProblemHandler } from './transport/http/problem-handler.ts';
import { installRateLimit } from './transport/http/rate-limit.ts';
import { installApiKeyAuth } from './transport/http/api-key-auth.ts';
import { orderPlacedHandler } from './transport/messages/order-placed-handler.ts';

/** The parts one process runs. The all-in-one runs all three; split deployments one each. */
export type ShopRole = 'api' | 'worker' | 'relay';

/**
 * Where orders' events go: the table outbox (any backend), or the WAL outbox — logical messages
 * relayed by logical decoding from `connectionString` (PostgreSQL with wal_level=logical).
 */
export type ShopOutbox = { kind: 'table' } | { kind: 'wal'; connectionString: string };

export interface ShopConfig {
  roles: ReadonlySet<ShopRole>;
  http: { port: number; host: string };
  /**
   * A process without the api role listens here for `/metrics`, `/healthz` and `/readyz` only,
   * so Prometheus can scrape its worker and saga metrics. None when absent.
   */
  metricsPort?: number;
  worker: { concurrency: number; pollIntervalMs: number; leaseMs: number };
  relay: { pollIntervalMs: number; batchSize: number };
  /** Default: the table outbox. */
  outbox?: ShopOutbox;
  /** A token bucket per client (API key, else address) on the API's routes; none when absent. */
  rateLimit?: TokenBucketLimits;
  /** `required`: every `/v1/…` request carries a live API key (`api_keys`). Default: none asked. */
  apiKeys?: 'required' | 'off';
}

export interface ShopDeps {
  /** Migrated and open; the shop closes it when it stops. */
  db: Db;
  clock: Clock;
  logger: Logger;
  /** Measures handler durations (`keel.handler.duration`). Default: none. Spans need no option. */
  meter?: Meter;
  /** The payment provider the fulfilment saga charges. Default: the shop's own, on `db`. */
  payments?: PaymentProvider;
  /**
   * A streaming standby of `db` for `GET /v1/orders/:id`; a read carrying a `Consistency-Token`
   * goes to it only once it has replayed that far. Default: none, every read from `db`. Closed on stop.
   */
  replica?: Db;
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
  readonly queue: PgQueue;
  /** The api role's feature flags (`orders.accepting`). */
  readonly flags: ShopFlags | undefined;
  /** Without the api role, with `metricsPort`: the listener of health and metrics (instrumentShop adds `/metrics`). */
  readonly ops: HttpServer | undefined;
  /** The database the shop owns and closes on stop. */
  readonly db: Db;
}

/**
 * Builds every part of the shop for the given roles and starts none. Start order: database
 * (already open), saga runner, worker, relay, then the HTTP listener last, so traffic arrives
 * only when everything behind it runs; stop runs in reverse, so the listener closes first and
 * the worker stops starting sagas before the runner drains the steps it is running.
 */
export function buildShop(config: ShopConfig, deps: ShopDeps): Shop {
  const { db, clock, logger } = deps;
  const queue = new PgQueue(db, { clock });
  const parts: Service[] = [new DbCloser(db)];
  if (deps.replica !== undefined) parts.push(new DbCloser(deps.replica, 'replica'));
  // Waiting a little for the replica is cheaper for the primary than falling back at once.
  const reads = new ReadYourWritesDb({ primary: db, replica: deps.replica, maxReplicaWaitMs: 50, clock });
  let ready = false;

  let worker: QueueConsumer | undefined;
  let sagas: SagaRunner | undefined;
  if (config.roles.has('worker')) {
    const fulfilment = orderFulfilment({
      db,
      clock,
      payments: deps.payments ?? new PaymentProvider(db, { clock }),
    });
    // The worker's lease, poll and concurrency settings apply to its saga instances too.
    sagas = new SagaRunner({
      db,
      sagas: [fulfilment],
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
  }

  const idempotency = new PostgresIdempotencyStore(db, { clock });
  const outbox = config.outbox ?? { kind: 'table' };
  // The slot must exist before the first event is written: an api process creates it at start,
  // before it listens (a relay process does too, when it starts).
  if (outbox.kind === 'wal' && config.roles.has('api')) parts.push(new WalOutboxSlot(db));
  let walRelay: WalOutboxRelay | undefined;
  if (outbox.kind === 'wal' && config.roles.has('relay')) {
    walRelay = new WalOutboxRelay(db, tracedPublisher(queue), {
      connectionString: outbox.connectionString,
      clock,
      batchSize: config.relay.batchSize,
    });
    walRelay.events.on('error', ({ error, during }) =>
      logger.warn({ err: error, during }, 'WAL relay error'),
    );
    walRelay.events.on('parked', ({ message, error }) =>
      logger.error({ err: error, messageId: message.id }, 'WAL relay parked a message (keel outbox retry)'),
    );
    parts.push(walRelay);
  }
  let relay: OutboxRelay | undefined;
  if (config.roles.has('relay')) {
    relay = new OutboxRelay(db, tracedPublisher(queue), {
      clock,
      pollIntervalMs: config.relay.pollIntervalMs,
      batchSize: config.relay.batchSize,
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

  const http: FastifyInstance = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the app's type free of pino's generics.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request lines would bury the first screen; errors are still logged by the problem handler.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  installProblemHandler(http);
  // Before the rate limit, which then counts per key.
  if (config.apiKeys === 'required') installApiKeyAuth(http, { db, clock });
  if (config.rateLimit !== undefined) installRateLimit(http, { limits: config.rateLimit, clock });
  void http.register(healthRoutes, { db, isReady: () => ready });
  // The api role reads the shop's feature flags; other roles take no orders over HTTP.
  const flags = config.roles.has('api') ? new ShopFlags(db, { clock, logger }) : undefined;
  if (flags !== undefined) parts.push(flags);
  void http.register(ordersRoutes, {
    db,
    reads,
    clock,
    idempotency,
    outbox: outbox.kind === 'wal' ? addToWalOutbox : addToOutbox,
    ...(flags === undefined ? {} : { accepting: () => flags.ordersAccepting }),
  });

  let server: HttpServer | undefined;
  let ops: HttpServer | undefined;
  if (config.roles.has('api')) {
    server = new HttpServer(http, config.http);
    parts.push(server);
  } else {
    parts.push(new FastifyCloser(http));
    if (config.metricsPort !== undefined) {
      const app = Fastify({
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- as for the api app above
        loggerInstance: logger as FastifyBaseLogger,
        // A scrape every few seconds is not worth a log line.
        logController: new LogController({ disableRequestLogging: true }),
        return503OnClosing: true,
      });
      installProblemHandler(app);
      void app.register(healthRoutes, { db, isReady: () => ready });
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
    flags,
    ops,
    db,
    get state() {
      return group.state;
    },
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

/** Closes the database last, after everything that uses it has stopped. */
class DbCloser extends ServiceBase {
  readonly #db: Db;
  constructor(db: Db, name = 'db') {
    super(name);
    this.#db = db;
  }
  protected override async onStart(): Promise<void> {}
  protected override async onStop(): Promise<void> {
    await this.#db.close();
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
