// The table outbox relay: its lifecycle, and the claim and the mark of a batch (statements in
// outbox-claims.ts, kept alive by outbox-claim-renewals.ts). Its other parts: the options
// (outbox-relay-options.ts), the publish of a claimed batch (outbox-relay-round.ts) and what a
// failed one does (outbox-relay-failures.ts), a started relay's loop (outbox-relay-pipeline.ts)
// and its waits (outbox-relay-wake-ups.ts).
import { v7 as uuidv7 } from 'uuid';
import type { Db } from '../db/db.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { envelopeFromRow } from '../messaging/envelope-row.ts';
import type { Publisher } from '../messaging/publisher.ts';
import type { CircuitBreakerPolicy } from '../resilience/index.ts';
import { HealthRecord, ServiceBase, type ReportsHealth, type ServiceHealth } from '../service/index.ts';
import { systemClock } from '../time/index.ts';
import { claimBatch, markPublished, renewClaim, type Claim } from './outbox-claims.ts';
import { ClaimRenewals, type ClaimLossReason } from './outbox-claim-renewals.ts';
import type { OutboxRelayEvents } from './outbox-relay-events.ts';
import { PublishFailures } from './outbox-relay-failures.ts';
import {
  resolveOutboxRelayOptions,
  type OutboxRelayOptions,
  type ResolvedOutboxRelayOptions,
} from './outbox-relay-options.ts';
import { runRelayPipeline } from './outbox-relay-pipeline.ts';
import { marksOf, RoundPublisher, type Round } from './outbox-relay-round.ts';
import { RelayWakeUps } from './outbox-relay-wake-ups.ts';
import { pruneOutbox } from './outbox-retention.ts';
import { breakerRefusal, type OutboxRelayDependency } from './relay-health.ts';

export type { OutboxRelayOptions } from './outbox-relay-options.ts';
export type { OutboxRelayEvents } from './outbox-relay-events.ts';

/**
 * Moves committed outbox rows to any `Publisher`. It never knows which broker it feeds.
 *
 * Delivery is at-least-once: a relay that dies after publishing and before marking leaves its
 * rows to be published again when the claim expires.
 *
 * No row is skipped: rows are selected by being in `keel_outbox` unpublished, never by a
 * high-water mark, so a row that commits late with a lower `seq` than rows already published is
 * still found.
 *
 * Per-key order: a row is claimed only while its (destination, key) is in no other relay's live
 * claim and no earlier row of its key waits to retry or is parked, and claims are serialised by
 * an advisory lock, so several relays never publish one key's rows at once or out of `seq`
 * order. With `addToOutbox`'s key locks, `seq` order within a key is commit order. Messages
 * without a key are not ordered.
 *
 * A claim is one row of `keel_outbox_claims` (a lease of `claimMs`, renewed while the batch is
 * worked on), not a write to each claimed row. Marking a row published moves it to
 * `keel_outbox_archive` (a DELETE and an append, which cost less than updating it in place),
 * where it is kept for `retentionMs`.
 *
 * A failed publish releases the rest of its round unpublished (the next round claims them
 * again, except behind the failed row's key); a row that failed is published alone from then on,
 * so one poison row cannot fail its neighbours' batches.
 */
export class OutboxRelay extends ServiceBase<OutboxRelayEvents> implements ReportsHealth {
  readonly #db: Db;
  readonly #options: ResolvedOutboxRelayOptions;
  readonly #health: HealthRecord<OutboxRelayDependency>;
  readonly #renewals: ClaimRenewals;
  readonly #rounds: RoundPublisher;
  readonly #wakeUps: RelayWakeUps;
  /** The breaker every publish goes through. */
  readonly breaker: CircuitBreakerPolicy;
  #nextCleanupAt: number;
  #loop: Promise<void> | undefined;

  constructor(db: Db, publisher: Publisher, options: OutboxRelayOptions = {}) {
    super(options.name ?? 'outbox-relay', options.clock ?? systemClock);
    if (typeof publisher?.publish !== 'function') {
      throw new InvalidArgumentError('publisher', 'a Publisher', publisher);
    }
    const resolved = resolveOutboxRelayOptions(options, this.clock);
    this.#db = db;
    this.#options = resolved;
    this.breaker = resolved.breaker;
    // A running relay's statements answer at least every pollIntervalMs while it idles (a claim)
    // and every claimMs / 3 while it publishes (its claims' renewals). None for a poll and a
    // whole lease means a statement hangs, and the claims it holds have lapsed to other relays.
    // The broker is called only when there are rows: it has no silence of its own.
    const health = new HealthRecord<OutboxRelayDependency>(this.clock, {
      database: { silentMs: resolved.pollIntervalMs + resolved.claimMs },
      broker: {},
    });
    this.#health = health;
    this.#renewals = new ClaimRenewals({
      clock: this.clock,
      claimMs: resolved.claimMs,
      maxClaimRenewalMs: resolved.maxClaimRenewalMs,
      renew: (id, now, until) =>
        health.track('database', 'claim-renewal', () => renewClaim(db, id, new Date(now), new Date(until))),
      lost: (claim, reason) => this.#claimLost(claim, reason),
      failed: (error) => this.events.emit('error', { error, during: 'claim-renewal' }),
    });
    const { maxAttempts, retryDelay } = resolved;
    this.#rounds = new RoundPublisher({
      publisher,
      breaker: this.breaker,
      renewals: this.#renewals,
      failures: new PublishFailures({
        db,
        clock: this.clock,
        maxAttempts,
        retryDelay,
        events: this.events,
        health,
      }),
      health,
    });
    this.#wakeUps = new RelayWakeUps(this.clock, resolved.pollIntervalMs, this.breaker);
    this.#nextCleanupAt = this.clock.now();
  }

  /**
   * Whether this relay reaches its database and its broker, from the outcome of its own calls
   * (a read of memory: no statement runs). 'failing' names `database` while its claims, marks,
   * claim renewals, the cleaner's deletes or the writes of a failed publish fail, or when none of
   * them has answered for `pollIntervalMs + claimMs` (a statement hangs); it names `broker` while
   * its publishes fail for the broker's sake (unavailable, a timeout, the breaker open or
   * isolated, or a publish that had not answered when its claim reached `maxClaimRenewalMs`). A
   * message refused for what it is (a permanent error: the row is parked) is not the broker's
   * failure. Each goes back to 'ok' at its next call that succeeds.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
    await this.#wakeUps.listen(this.#db);
    this.#health.succeeded('database');
    this.#loop = runRelayPipeline({
      dialect: this.#db.dialect,
      wakeUps: this.#wakeUps,
      mayClaim: () => this.#mayClaim(),
      claim: (owner, published) => this.#claim(owner, published),
      publish: (claim) => this.#rounds.publish(claim),
      finish: (rounds, released, onFailure) => this.#finish(rounds, released, onFailure),
      emitPublished: (rounds) => this.#emitPublished(rounds),
      cleanUpIfDue: () => this.#cleanUpIfDue(),
      reportError: (error) => this.events.emit('error', { error, during: 'relay' }),
    });
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    // A round in progress finishes and is marked; the claim made ahead of it goes back unpublished.
    // Past the drain deadline stop() returns while a publish may still run: its claims are no
    // longer renewed, so they lapse after claimMs and another relay takes the rows.
    const abandon = (): void => this.#renewals.close();
    drain.addEventListener('abort', abandon, { once: true });
    try {
      this.#wakeUps.stop();
      await this.#loop;
      await this.#wakeUps.unlisten();
    } finally {
      drain.removeEventListener('abort', abandon);
    }
  }

  /**
   * Claims one batch, publishes it and marks it; returns how many rows it published. Claims
   * nothing while the breaker is open. For tests and `outbox drain`; a started relay runs the
   * same steps in its loop, claiming the next batch while one is being published.
   */
  async relayOnce(): Promise<number> {
    if (!this.#mayClaim()) return 0;
    const claim = await this.#claim(uuidv7(), []);
    if (claim.rows.length === 0) return 0;
    let round: Round;
    try {
      round = await this.#rounds.publish(claim);
    } catch (error) {
      this.#renewals.drop([claim.id]);
      throw error;
    }
    await this.#finish([round], [], 'drop');
    return round.published.length;
  }

  /** Runs the cleaner now: deletes published rows past the retention. Returns how many. */
  async prune(): Promise<number> {
    const { retentionMs } = this.#options;
    if (retentionMs === false) return 0;
    const deleted = await this.#health.track('database', 'cleanup', () =>
      pruneOutbox(this.#db, { retentionMs, clock: this.clock }),
    );
    if (deleted > 0) this.events.emit('pruned', { deleted });
    return deleted;
  }

  /** The cleaner, every `cleanupIntervalMs` between a started relay's rounds; undefined when not due. */
  #cleanUpIfDue(): Promise<unknown> | undefined {
    if (this.#options.retentionMs === false || this.clock.now() < this.#nextCleanupAt) return undefined;
    this.#nextCleanupAt = this.clock.now() + this.#options.cleanupIntervalMs;
    return this.prune().catch((error: unknown) => this.events.emit('error', { error, during: 'cleanup' }));
  }

  /** Whether the breaker lets a claim be made; a refusal is the broker's failure (relay-health.ts). */
  #mayClaim(): boolean {
    const refusal = breakerRefusal(this.breaker, this.clock.now());
    if (refusal !== undefined) this.#health.failed('broker', refusal, 'publish');
    return refusal === undefined;
  }

  #claimLost(claim: Claim, reason: ClaimLossReason): void {
    // Given up at the renewal limit while its rows were being published: a broker call hangs.
    if (reason === 'renewal-limit' && this.#rounds.isPublishing(claim.id)) {
      const error = new KeelError(
        'KEEL_TIMEOUT',
        `a publish had not answered after maxClaimRenewalMs (${this.#options.maxClaimRenewalMs} ms)`,
      );
      this.#health.failed('broker', error, 'publish');
    }
    this.events.emit('claim-lost', { claimId: claim.id, reason, messages: claim.rows.map(envelopeFromRow) });
  }

  /**
   * Claims a batch for `owner`, writing the marks of `published` rounds in the same transaction,
   * and renews the claim from then on. The marks' claims are renewed again if it fails: the
   * caller keeps those rounds for the next claim.
   */
  async #claim(owner: string, published: readonly Round[]): Promise<Claim> {
    const now = this.clock.now();
    const marks = published.length === 0 ? undefined : marksOf(published, []);
    const claim = await this.#renewals.ending(
      marks?.claimIds ?? [],
      () =>
        this.#health.track('database', 'claim', () =>
          claimBatch(this.#db, {
            owner,
            id: uuidv7(),
            now: new Date(now),
            until: new Date(now + this.#options.claimMs),
            limit: this.#options.batchSize,
            marks,
            deleteRows: this.#options.deleteOnPublish,
          }),
        ),
      'resume',
    );
    this.#renewals.hold(claim);
    return claim;
  }

  /**
   * Marks the rounds' published rows, ends their claims and the `released` ones. If it fails,
   * their claims are renewed again when the caller keeps the rounds ('resume'), else they lapse.
   */
  async #finish(
    rounds: readonly Round[],
    released: readonly string[],
    onFailure: 'resume' | 'drop',
  ): Promise<void> {
    const marks = marksOf(rounds, released);
    const mark = (): Promise<void> =>
      markPublished(this.#db, marks, new Date(this.clock.now()), this.#options.deleteOnPublish);
    // Nothing to mark runs no statement: no contact to record.
    await this.#renewals.ending(
      marks.claimIds,
      () => (marks.claimIds.length === 0 ? mark() : this.#health.track('database', 'mark', mark)),
      onFailure,
    );
    this.#emitPublished(rounds);
  }

  #emitPublished(rounds: readonly Round[]): void {
    for (const round of rounds) for (const sent of round.sent) this.events.emit('published', sent);
  }
}
