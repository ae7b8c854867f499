import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { migrate, openDb, type Db } from '../../../src/db/index.ts';
import { ServiceBase } from '../../../src/service/index.ts';
import { systemClock, type Clock, type Random } from '../../../src/time/index.ts';
import { PaymentProvider } from '../application/payment-provider.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { FaultPlan } from './fault-plan.ts';
import { buildProviderApp } from './provider-app.ts';
import type { ProviderConfig } from './provider-config.ts';

export interface PaymentProviderServiceOptions {
  /** The ledger's database, migrated. Closed on stop only with `ownsDb`. */
  db: Db;
  ownsDb?: boolean;
  http: { port: number; host: string };
  /** The faults, changeable while it runs (`service.faults.set({ down: true })`). Default: none. */
  faults?: FaultPlan;
  clock?: Clock;
  logger?: FastifyBaseLogger;
}

/** The payment provider service: listens on start; on stop, closes the listener, then its database if it owns it. */
export class PaymentProviderService extends ServiceBase {
  readonly faults: FaultPlan;
  readonly #db: Db;
  readonly #ownsDb: boolean;
  readonly #app: FastifyInstance;
  readonly #http: { port: number; host: string };
  #address: string | undefined;

  constructor(options: PaymentProviderServiceOptions) {
    const clock = options.clock ?? systemClock;
    super('payment-provider', clock);
    this.#db = options.db;
    this.#ownsDb = options.ownsDb ?? false;
    this.faults = options.faults ?? new FaultPlan();
    this.#http = options.http;
    this.#app = buildProviderApp({
      provider: new PaymentProvider(options.db, { clock }),
      faults: this.faults,
      clock,
      health: { db: options.db, isReady: () => this.state === 'running' },
      ...(options.logger === undefined ? {} : { logger: options.logger }),
    });
  }

  /** `http://host:port` once listening: the real port when 0 was asked for. */
  get address(): string {
    if (this.#address === undefined) throw new Error('the payment provider is not listening');
    return this.#address;
  }

  protected override async onStart(): Promise<void> {
    this.#address = await this.#app.listen(this.#http);
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    // At the drain deadline every connection closes, which also ends the stalls still waiting.
    drain.addEventListener('abort', () => this.#app.server.closeAllConnections(), { once: true });
    try {
      await this.#app.close();
    } finally {
      if (this.#ownsDb) await this.#db.close();
    }
  }
}

/** The preset of `cmd/payment-provider.ts`: opens and migrates the ledger's database, builds the service. */
export async function openPaymentProvider(
  config: ProviderConfig,
  options: { clock?: Clock; random?: Random; logger?: FastifyBaseLogger } = {},
): Promise<PaymentProviderService> {
  const faults = new FaultPlan(config.faults, options.random);
  const db = await openDb(config.db);
  try {
    await migrate(db, await shopMigrations());
  } catch (error) {
    await db.close();
    throw error;
  }
  return new PaymentProviderService({ db, ownsDb: true, http: config.http, faults, ...options });
}
