import { v7 as uuidv7 } from 'uuid';
import type { Db, Unlisten } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { envelopeFromRow } from '../messaging/envelope-row.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { describeError } from '../messaging/describe-error.ts';
import { BrokenCircuitError, IsolatedCircuitError, type CircuitBreakerPolicy } from '../resilience/index.ts';
import { ServiceBase } from '../service/index.ts';
import { systemClock, type TimerHandle } from '../time/index.ts';
import {
  claimBatch,
  groupByDestination,
  markPublished,
  recordFailure,
  renewClaim,
  type Claim,
  type Marks,
  type OutboxRow,
} from './outbox-claims.ts';
import { ClaimRenewals, type ClaimLossReason } from './outbox-claim-renewals.ts';
import { MarkQueue } from './outbox-relay-marks.ts';
import { defaultOutboxRetentionMs, pruneOutbox } from './outbox-retention.ts';
import {
  breakerAllows,
  isPermanentPublishError,
  positiveInteger,
  relayPolicy,
  type RelayPolicyOptions,
  type RelayPublishEvents,
} from './relay-policy.ts';
import { outboxChannel } from './schema.ts';

export interface OutboxRelayOptions extends RelayPolicyOptions {
  /** Rows claimed per round (one claim query), published in one call per destination. Default 100. */
  batchSize?: number;
  /** How often to look for rows when no NOTIFY arrives. Default 1 000 ms. */
  pollIntervalMs?: number;
  /**
   * The lease of a claim. The relay renews it (to now + `claimMs`, every `claimMs / 3`) while it
   * publishes and marks the batch, so it bounds how long the rows of a relay that died (or
   * stalled, or was stopped past its drain deadline mid-publish) wait for another relay, not how
   * long a publish may take. Keep it above a few renewal round trips to the database: a claim
   * whose renewals fail for `claimMs` lets another relay take the rows (duplicates, and a key's
   * order at risk). Default 30 000 ms.
   */
  claimMs?: number;
  /**
   * How long a batch's claim is renewed at most: a publish still running then (a broker call
   * that hangs) gives its claim up, so its rows and their keys go to another relay `claimMs`
   * later instead of waiting for ever; if the publish completes after all, its rows go out twice.
   * Keep it well above the slowest publish. Default 300 000 ms.
   */
  maxClaimRenewalMs?: number;
  /**
   * Published rows (moved to `keel_outbox_archive` as they are published) older than this are
   * deleted by the relay, in batches, one cleaner at a time across relays (an advisory lock).
   * `false`: the relay never deletes (run `pruneOutbox` elsewhere). `0`: each row is deleted as
   * it is published, not archived (the cheapest; `outboxStatus` then counts no published rows).
   * Default one day.
   */
  retentionMs?: number | false;
  /** How often the relay runs the cleaner. Default 60 000 ms. */
  cleanupIntervalMs?: number;
}

/** `published` comes once the rows are marked published. */
export interface OutboxRelayEvents extends RelayPublishEvents {
  /** The cleaner deleted published rows past the retention. */
  pruned: { deleted: number };
  /**
   * The relay no longer holds a batch's claim (see `ClaimLossReason`): another relay may take its
   * rows, so they may be published twice. The relay publishes no more of the batch (a call under
   * way finishes) and gives back the batch it claimed ahead; what it published is marked. A
   * renewal failure itself is an `error` event (`during: 'claim-renewal'`).
   */
  'claim-lost': { claimId: string; reason: ClaimLossReason; messages: readonly Envelope[] };
}

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
export class OutboxRelay extends ServiceBase<OutboxRelayEvents> {
  readonly #db: Db;
  readonly #publisher: Publisher;
  readonly #batchSize: number;
  readonly #pollIntervalMs: number;
  readonly #claimMs: number;
  readonly #renewals: ClaimRenewals;
  readonly #maxAttempts: number;
  readonly #retryDelay: (attempt: number) => number;
  readonly #retentionMs: number | false;
  /** `retentionMs: 0`: a published row is deleted instead of archived. */
  readonly #deleteOnPublish: boolean;
  readonly #cleanupIntervalMs: number;
  /** The breaker every publish goes through. */
  readonly breaker: CircuitBreakerPolicy;
  #nextCleanupAt: number;
  #unlisten: Unlisten | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #pending = false;
  #wakeUp: (() => void) | undefined;

  constructor(db: Db, publisher: Publisher, options: OutboxRelayOptions = {}) {
    super(options.name ?? 'outbox-relay', options.clock ?? systemClock);
    if (typeof publisher?.publish !== 'function') {
      throw new InvalidArgumentError('publisher', 'a Publisher', publisher);
    }
    this.#db = db;
    this.#publisher = publisher;
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
    this.#pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.#claimMs = positiveInteger('claimMs', options.claimMs ?? 30_000);
    this.#renewals = new ClaimRenewals({
      clock: this.clock,
      claimMs: this.#claimMs,
      maxClaimRenewalMs: positiveInteger('maxClaimRenewalMs', options.maxClaimRenewalMs ?? 300_000),
      renew: (id, now, until) => renewClaim(db, id, new Date(now), new Date(until)),
      lost: (claim, reason) =>
        this.events.emit('claim-lost', {
          claimId: claim.id,
          reason,
          messages: claim.rows.map(envelopeFromRow),
        }),
      failed: (error) => this.events.emit('error', { error, during: 'claim-renewal' }),
    });
    ({
      maxAttempts: this.#maxAttempts,
      retryDelay: this.#retryDelay,
      breaker: this.breaker,
    } = relayPolicy(options, this.clock));
    const retentionMs = options.retentionMs ?? defaultOutboxRetentionMs;
    if (retentionMs !== false && (!Number.isFinite(retentionMs) || retentionMs < 0)) {
      throw new InvalidArgumentError('retentionMs', 'a number of ms >= 0, or false', retentionMs);
    }
    this.#retentionMs = retentionMs;
    this.#deleteOnPublish = retentionMs === 0;
    this.#cleanupIntervalMs = positiveInteger('cleanupIntervalMs', options.cleanupIntervalMs ?? 60_000);
    this.#nextCleanupAt = this.clock.now();
  }

  protected override async onStart(): Promise<void> {
    this.#unlisten = await this.#db.listen(outboxChannel, () => this.#wake());
    this.#loop = this.#run();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    // A round in progress finishes and is marked; the claim made ahead of it goes back unpublished.
    // Past the drain deadline stop() returns while a publish may still run: its claims are no
    // longer renewed, so they lapse after claimMs and another relay takes the rows.
    const abandon = (): void => this.#renewals.close();
    drain.addEventListener('abort', abandon, { once: true });
    try {
      this.#stopping = true;
      this.#wake();
      await this.#loop;
      await this.#unlisten?.();
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
      round = await this.#publishRound(claim);
    } catch (error) {
      this.#renewals.drop([claim.id]);
      throw error;
    }
    await this.#finish([round], [], 'drop');
    return round.published.length;
  }

  /** Runs the cleaner now: deletes published rows past the retention. Returns how many. */
  async prune(): Promise<number> {
    if (this.#retentionMs === false) return 0;
    const deleted = await pruneOutbox(this.#db, { retentionMs: this.#retentionMs, clock: this.clock });
    if (deleted > 0) this.events.emit('pruned', { deleted });
    return deleted;
  }

  #wake(): void {
    this.#pending = true;
    this.#wakeUp?.();
  }

  /**
   * A pipeline of two: while batch N is published, batch N+1 is claimed, and the batches
   * published before N are marked. The claims of one run share an owner, whose own claims do not
   * hold their keys back, so N+1 may hold later rows of N's keys: it is published only after N
   * was, and given back unpublished if N fails.
   *
   * On PostgreSQL the marks run beside the claims, in transactions of their own on another pooled
   * connection (MarkQueue), so a claim does not wait for the mark; on PGlite, whose one
   * connection runs one transaction at a time, they ride in the next claim's transaction.
   */
  async #run(): Promise<void> {
    let owner = uuidv7();
    const beside =
      this.#db.dialect === 'pg'
        ? new MarkQueue<Round>(
            // A mark that fails is retried: its claims must stay alive until then.
            (rounds) => this.#finish(rounds, [], 'resume'),
            (error) => this.events.emit('error', { error, during: 'relay' }),
          )
        : undefined;
    /** Rounds published and not yet marked that ride with the next claim (or the next finish). */
    const unmarked: Round[] = [];
    /** Every round published and not yet marked, after the mark in flight (if any) settled. */
    const takeUnmarked = async (): Promise<Round[]> => {
      const failed = beside === undefined ? [] : await beside.settle();
      return [...failed, ...unmarked.splice(0)];
    };
    let next: Promise<Claim> | undefined;
    let failures = 0;
    const claimNext = async (): Promise<Claim> => {
      const marks = unmarked.splice(0);
      try {
        const claim = await this.#claim(owner, marks);
        this.#emitPublished(marks);
        return claim;
      } catch (error) {
        // The marks rolled back with the claim: they go with the next one.
        unmarked.unshift(...marks);
        throw error;
      }
    };
    /** The claim made ahead, if any, no longer ahead; its failure is thrown only when asked for. */
    const takeNext = async (rethrow = false): Promise<Claim | undefined> => {
      const pending = next;
      next = undefined;
      return rethrow ? pending : pending?.catch(() => undefined);
    };
    while (!this.#stopping) {
      this.#pending = false;
      let moved = 0;
      let claim: Claim | undefined;
      try {
        claim = next !== undefined ? await takeNext(true) : this.#mayClaim() ? await claimNext() : undefined;
        if (claim === undefined || claim.rows.length === 0) {
          // Marked now before the relay idles; after a wake-up they ride with the next claim.
          const rest = await takeUnmarked();
          if (rest.length > 0 && !this.#pending) await this.#finish(rest, [], 'drop');
          else unmarked.push(...rest);
        } else {
          if (this.#mayClaim()) {
            next = claimNext();
            // Observed at once: a failure is reported when the next round awaits it.
            next.catch(() => undefined);
          }
          const round = await this.#publishRound(claim);
          moved = round.published.length;
          if (round.ok) {
            if (beside === undefined) unmarked.push(round);
            else beside.add(round);
          } else {
            // The claim made ahead may hold later rows of the failed rows' keys: it goes back.
            const ahead = await takeNext();
            await this.#finish(
              [...(await takeUnmarked()), round],
              ahead === undefined ? [] : [ahead.id],
              'drop',
            );
          }
        }
        failures = 0;
      } catch (error) {
        failures++;
        this.events.emit('error', { error, during: 'relay' });
        // A statement failed mid-round: the claims in hand go back (their published rows will be
        // published again), and a new owner's claims are held back by any that stay, until they
        // expire, so no later row of their keys goes out first.
        owner = uuidv7();
        const ahead = await takeNext();
        const held = [claim?.id, ahead?.id].filter((id) => id !== undefined);
        await this.#finish([], held, 'drop').catch(() => undefined);
        await this.#pause(Math.min(30_000, this.#pollIntervalMs * 2 ** Math.min(failures, 5)));
        continue;
      }
      if (this.#retentionMs !== false && this.clock.now() >= this.#nextCleanupAt) {
        this.#nextCleanupAt = this.clock.now() + this.#cleanupIntervalMs;
        await this.prune().catch((error: unknown) => this.events.emit('error', { error, during: 'cleanup' }));
      }
      if (moved > 0 || this.#pending || next !== undefined) continue;
      await this.#pause(this.#idleMs());
    }
    // Stopping: the claim made ahead goes back unpublished, what was published is marked.
    const ahead = await takeNext();
    const rest = await takeUnmarked();
    if (ahead !== undefined || rest.length > 0) {
      await this.#finish(rest, ahead === undefined ? [] : [ahead.id], 'drop').catch((error: unknown) =>
        this.events.emit('error', { error, during: 'relay' }),
      );
    }
  }

  #mayClaim(): boolean {
    return breakerAllows(this.breaker);
  }

  /** Until the next poll, or until the breaker lets a probe through if that comes first. */
  #idleMs(): number {
    const state = this.breaker.state;
    if (state.status !== 'open') return this.#pollIntervalMs;
    return Math.max(1, Math.min(this.#pollIntervalMs, state.until - this.clock.now()));
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const done = (): void => {
        this.#wakeUp = undefined;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        resolve();
      };
      this.#wakeUp = done;
      timer = this.clock.setTimeout(done, ms);
      if (this.#stopping) done();
    });
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
        claimBatch(this.#db, {
          owner,
          id: uuidv7(),
          now: new Date(now),
          until: new Date(now + this.#claimMs),
          limit: this.#batchSize,
          marks,
          deleteRows: this.#deleteOnPublish,
        }),
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
    await this.#renewals.ending(
      marks.claimIds,
      () => markPublished(this.#db, marks, new Date(this.clock.now()), this.#deleteOnPublish),
      onFailure,
    );
    this.#emitPublished(rounds);
  }

  #emitPublished(rounds: readonly Round[]): void {
    for (const round of rounds) for (const sent of round.sent) this.events.emit('published', sent);
  }

  /**
   * Publishes a claim's rows, each destination's in `seq` order: runs of rows never tried go in
   * one call, a row that failed before goes alone. Stops at the first failure, or once the claim
   * is lost (another relay may be publishing the same rows); the rows not published go back when
   * the claim ends.
   */
  async #publishRound(claim: Claim): Promise<Round> {
    const round: Round = { claim, published: [], sent: [], ok: true };
    for (const [destination, rows] of groupByDestination(claim.rows)) {
      let start = 0;
      while (start < rows.length) {
        if (this.#renewals.isLost(claim.id)) {
          round.ok = false;
          return round;
        }
        let end = start + 1;
        if (rows[start]!.attempts === 0) while (end < rows.length && rows[end]!.attempts === 0) end++;
        const chunk = rows.slice(start, end);
        const messages = await this.#publishChunk(claim.id, destination, chunk);
        if (messages === undefined) {
          round.ok = false;
          return round;
        }
        for (const row of chunk) round.published.push(row);
        round.sent.push({ destination, messages });
        start = end;
      }
    }
    return round;
  }

  /** Publishes one call's rows; returns their envelopes, or undefined when the publish failed. */
  async #publishChunk(
    claimId: string,
    destination: string,
    rows: OutboxRow[],
  ): Promise<readonly Envelope[] | undefined> {
    const messages = rows.map(envelopeFromRow);
    const closedBefore = this.breaker.state.status === 'closed';
    try {
      await this.breaker.execute(() => this.#publisher.publish(destination, messages));
      return messages;
    } catch (error) {
      // Not tried: the rows go back as they were when the claim ends.
      if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) return undefined;
      // In a batch, the refused message could be any of them: each is tried alone next, and
      // only then is a permanent error pinned on one row.
      const permanent = rows.length === 1 && isPermanentPublishError(error);
      const charged = closedBefore || permanent;
      this.events.emit('publish-failed', { destination, messages, error, charged });
      await this.#recordFailure(claimId, rows, error, charged, permanent);
      return undefined;
    }
  }

  /**
   * Charged (the breaker was closed, so the broker was thought healthy): the attempt counts, and
   * the row is parked at `maxAttempts`. Not charged (a half-open probe failed: the broker is
   * still down): the row only waits, so an outage never parks the backlog. A permanent error
   * (an argument or validation error: no retry can fix it) parks at once.
   */
  async #recordFailure(
    claimId: string,
    rows: OutboxRow[],
    error: unknown,
    charged: boolean,
    permanent: boolean,
  ): Promise<void> {
    const now = this.clock.now();
    // Rows of one call share their attempt count: a run of rows never tried, or one row alone.
    const attempt = (rows[0]?.attempts ?? 0) + (charged ? 1 : 0);
    const park = permanent || (charged && attempt >= this.#maxAttempts);
    await recordFailure(this.#db, claimId, rows, {
      error: describeError(error),
      now: new Date(now),
      availableAt: new Date(now + this.#retryDelay(Math.max(1, attempt))),
      charged,
      park,
    });
    if (park) for (const row of rows) this.events.emit('parked', { message: envelopeFromRow(row), error });
  }
}

/** A claim on its way: the rows published so far and what went to each destination. */
interface Round {
  claim: Claim;
  published: OutboxRow[];
  sent: { destination: string; messages: readonly Envelope[] }[];
  /** False when a publish failed or was refused by the breaker, or the claim was lost: the rest was not tried. */
  ok: boolean;
}

function marksOf(rounds: readonly Round[], released: readonly string[]): Marks {
  return {
    seqs: rounds.flatMap((r) => r.published.map((row) => row.seq)),
    claimIds: [...rounds.map((r) => r.claim.id), ...released],
  };
}
