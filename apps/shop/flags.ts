import { randomUUID } from 'node:crypto';
import { NOOP_PROVIDER, OpenFeature, ProviderEvents } from '@openfeature/server-sdk';
import type { Logger } from 'pino';
import type { Db } from '../../src/db/index.ts';
import { VersionConflictError } from '../../src/consistency/index.ts';
import { KeelFlagProvider, PostgresFlagStore, type FlagDefinition } from '../../src/flags/index.ts';
import {
  HealthRecord,
  ServiceBase,
  type ReportsHealth,
  type ServiceHealth,
} from '../../src/service/index.ts';
import type { Clock } from '../../src/time/index.ts';

/** The kill switch for new orders: off, `POST /v1/orders` answers 503 `KEEL_FEATURE_OFF`. On when absent. */
export const ordersAcceptingFlag = 'orders.accepting';

/** What the api writes at its first start, so `keel flags disable orders.accepting` finds the flag. */
const ordersAcceptingSeed: FlagDefinition = {
  key: ordersAcceptingFlag,
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'on',
};

/**
 * The shop's feature flags, through OpenFeature over keel's provider (flags in the shop's
 * database, `keel flags enable|disable`). Each shop registers its provider under a domain of its
 * own, so several shops in one process (the tests) do not share flags.
 *
 * The kill switch takes no context, so it is evaluated when the flags change, not per request:
 * an OpenFeature client's evaluation costs ~14 µs (its hooks and context merging; keel's
 * provider ~0.5 µs), which a per-customer flag pays and a global one need not.
 */
export class ShopFlags extends ServiceBase implements ReportsHealth {
  readonly #store: PostgresFlagStore;
  readonly #provider: KeelFlagProvider;
  readonly #logger: Logger;
  readonly #domain = `shop-${randomUUID()}`;
  #ordersAccepting = true;
  // Every read of the flags the provider makes (its polls, the reads a change wakes) reports here.
  readonly #health: HealthRecord<'database'>;

  constructor(db: Db, options: { clock: Clock; logger: Logger }) {
    super('flags', options.clock);
    this.#store = new PostgresFlagStore(db);
    this.#provider = new KeelFlagProvider(this.#store, {
      clock: options.clock,
      onRead: (error) => {
        if (error === undefined) this.#health.succeeded('database');
        else this.#health.failed('database', error, 'flag refresh');
      },
    });
    this.#logger = options.logger;
    // Read on a schedule: no answer for two polls means a read hangs.
    this.#health = new HealthRecord(options.clock, {
      database: { silentMs: 2 * this.#provider.pollIntervalMs },
    });
  }

  /**
   * Failing from the read of the flags that failed (the last values read are still served) until
   * one succeeds, or when no read has answered for two poll intervals (one hangs): an operator's
   * kill switch is not heard meanwhile. `lastContactAt` is the last read that answered.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  /** Whether new orders are taken: `orders.accepting`, as of the last change heard. */
  get ordersAccepting(): boolean {
    return this.#ordersAccepting;
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    // Only where it is missing: an operator's setting, or another api's seed, stays as it is.
    await this.#store.put(ordersAcceptingSeed, { expectedVersion: 0 }).catch((error: unknown) => {
      if (!(error instanceof VersionConflictError)) throw error;
    });
    await OpenFeature.setProviderAndWait(this.#domain, this.#provider);
    const client = OpenFeature.getClient(this.#domain);
    const update = async (): Promise<void> => {
      const accepting = await client.getBooleanValue(ordersAcceptingFlag, true);
      if (accepting !== this.#ordersAccepting) {
        this.#logger.warn(
          { flag: ordersAcceptingFlag, value: accepting },
          accepting ? 'orders resumed' : 'orders paused',
        );
      }
      this.#ordersAccepting = accepting;
    };
    client.addHandler(ProviderEvents.ConfigurationChanged, () => void update());
    client.addHandler(ProviderEvents.Stale, (details) => {
      this.#logger.warn({ reason: details?.message }, 'feature flags not refreshed; serving the last read');
    });
    await update();
  }

  protected override async onStop(): Promise<void> {
    // Replacing the provider closes it (its NOTIFY listener and poll) and drops the domain's handlers' source.
    await OpenFeature.setProviderAndWait(this.#domain, NOOP_PROVIDER);
    await this.#provider.onClose();
  }
}
