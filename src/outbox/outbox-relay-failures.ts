// What a failed publish call does to its rows: whether it counts towards parking (charged), when
// they are tried again (retryDelay), and whether they are parked; reported, then written in one
// statement.
import type { Db } from '../db/db.ts';
import { envelopeFromRow } from '../messaging/envelope-row.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { describeError } from '../messaging/describe-error.ts';
import type { LifecycleEvents } from '../service/service.ts';
import type { TypedEvents } from '../service/typed-events.ts';
import type { Clock } from '../time/index.ts';
import { recordFailure, type OutboxRow } from './outbox-claims.ts';
import type { OutboxRelayEvents } from './outbox-relay-events.ts';
import type { RelayHealth } from './relay-health.ts';
import { isPermanentPublishError } from './relay-policy.ts';

export interface PublishFailuresOptions {
  db: Db;
  clock: Clock;
  maxAttempts: number;
  retryDelay: (attempt: number) => number;
  events: TypedEvents<OutboxRelayEvents & LifecycleEvents>;
  /** Where the outcome of the failure's write goes, for the relay's `health()`. */
  health: RelayHealth<'database'>;
}

export class PublishFailures {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #maxAttempts: number;
  readonly #retryDelay: (attempt: number) => number;
  readonly #events: TypedEvents<OutboxRelayEvents & LifecycleEvents>;
  readonly #health: RelayHealth<'database'>;

  constructor(options: PublishFailuresOptions) {
    this.#db = options.db;
    this.#clock = options.clock;
    this.#maxAttempts = options.maxAttempts;
    this.#retryDelay = options.retryDelay;
    this.#events = options.events;
    this.#health = options.health;
  }

  /**
   * A publish call of a claim's rows failed (one the breaker let through): emits `publish-failed`
   * and records the failure on the rows. `closedBefore`: the breaker was closed when it started.
   */
  record(
    claimId: string,
    destination: string,
    rows: OutboxRow[],
    messages: readonly Envelope[],
    error: unknown,
    closedBefore: boolean,
  ): Promise<void> {
    // In a batch, the refused message could be any of them: each is tried alone next, and
    // only then is a permanent error pinned on one row.
    const permanent = rows.length === 1 && isPermanentPublishError(error);
    const charged = closedBefore || permanent;
    this.#events.emit('publish-failed', { destination, messages, error, charged });
    return this.#write(claimId, rows, error, charged, permanent);
  }

  /**
   * Charged (the breaker was closed, so the broker was thought healthy): the attempt counts, and
   * the row is parked at `maxAttempts`. Not charged (a half-open probe failed: the broker is
   * still down): the row only waits, so an outage never parks the backlog. A permanent error
   * (an argument or validation error: no retry can fix it) parks at once.
   */
  async #write(
    claimId: string,
    rows: OutboxRow[],
    error: unknown,
    charged: boolean,
    permanent: boolean,
  ): Promise<void> {
    const now = this.#clock.now();
    // Rows of one call share their attempt count: a run of rows never tried, or one row alone.
    const attempt = (rows[0]?.attempts ?? 0) + (charged ? 1 : 0);
    const park = permanent || (charged && attempt >= this.#maxAttempts);
    await this.#health.track('database', 'record-failure', () =>
      recordFailure(this.#db, claimId, rows, {
        error: describeError(error),
        now: new Date(now),
        availableAt: new Date(now + this.#retryDelay(Math.max(1, attempt))),
        charged,
        park,
      }),
    );
    if (park) for (const row of rows) this.#events.emit('parked', { message: envelopeFromRow(row), error });
  }
}
