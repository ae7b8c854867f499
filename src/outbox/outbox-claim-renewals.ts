import { LeaseHeartbeat } from '../messaging/lease-heartbeat.ts';
import type { Clock } from '../time/index.ts';
import type { Claim } from './outbox-claims.ts';

/**
 * Why a relay no longer holds a claim it did not end itself:
 * - 'expired': a renewal found it no longer live (renewals failed, or the process stalled, past
 *   `claimMs`); another relay may have taken its rows.
 * - 'renewal-limit': it was renewed for `maxClaimRenewalMs` and is left to lapse, so a publish
 *   that hangs does not hold its rows (and their keys) for ever.
 */
export type ClaimLossReason = 'expired' | 'renewal-limit';

export interface ClaimRenewalOptions {
  clock: Clock;
  claimMs: number;
  maxClaimRenewalMs: number;
  /** Extends a live claim to `until`; resolves false when it is no longer live. Never revives one. */
  renew: (claimId: string, now: number, until: number) => Promise<boolean>;
  lost: (claim: Claim, reason: ClaimLossReason) => void;
  /** A renewal statement failed; the next beat tries again. */
  failed: (error: unknown) => void;
}

/** One claim the relay holds: renewed by its own heartbeat, none while the claim is being ended. */
interface Held {
  readonly claim: Claim;
  readonly since: number;
  heartbeat: LeaseHeartbeat | undefined;
  lost: boolean;
}

/**
 * Keeps the claims a relay works on alive: each claim's `claim_until` is pushed to now +
 * `claimMs` every `claimMs / 3`, from its claim until the statement that ends it (its mark, or
 * its release). A batch done within `claimMs / 3` costs one timer set and cleared, no statement.
 *
 * A claim found gone is reported once and never renewed again; the relay publishes no more of
 * its rows. Each claim has a heartbeat of its own (a relay holds two or three at once), so a
 * claim is renewed only once it is `claimMs / 3` old.
 */
export class ClaimRenewals {
  readonly #options: ClaimRenewalOptions;
  readonly #everyMs: number;
  readonly #held = new Map<string, Held>();
  #closed = false;

  constructor(options: ClaimRenewalOptions) {
    this.#options = options;
    this.#everyMs = Math.max(1, Math.floor(options.claimMs / 3));
  }

  /** Starts renewing a claim just made. Does nothing once closed, or for a claim of no rows (no claim row exists). */
  hold(claim: Claim): void {
    if (this.#closed || claim.rows.length === 0) return;
    const held: Held = { claim, since: this.#options.clock.now(), heartbeat: undefined, lost: false };
    this.#held.set(claim.id, held);
    this.#start(held);
  }

  /** Whether a renewal found the claim gone (or gave it up): its rows may be another relay's. */
  isLost(claimId: string): boolean {
    return this.#held.get(claimId)?.lost ?? false;
  }

  /**
   * Runs `statement`, which ends the claims `ids` (a mark, a release). Their renewal stops first,
   * so a renewal under way that finds them gone once it commits is not taken for a loss. If it
   * fails, 'resume' renews them again (the caller keeps them and retries the mark), 'drop' lets
   * them lapse (the caller has given them up: their rows come again after `claimMs`).
   */
  async ending<T>(
    ids: readonly string[],
    statement: () => Promise<T>,
    onFailure: 'resume' | 'drop',
  ): Promise<T> {
    const ending: Held[] = [];
    for (const id of ids) {
      const held = this.#held.get(id);
      if (held === undefined) continue;
      ending.push(held);
      this.#pause(held);
    }
    let ended = false;
    try {
      const result = await statement();
      ended = true;
      return result;
    } finally {
      for (const held of ending) {
        if (ended || onFailure === 'drop') this.#forget(held);
        else if (!held.lost && !this.#closed && this.#held.get(held.claim.id) === held) this.#start(held);
      }
    }
  }

  /** Stops renewing claims given up without a statement (the work on them threw). */
  drop(ids: readonly string[]): void {
    for (const id of ids) {
      const held = this.#held.get(id);
      if (held === undefined) continue;
      this.#pause(held);
      this.#forget(held);
    }
  }

  /**
   * Stops every renewal and starts none again: the relay was stopped past its drain deadline,
   * with a publish still running. Its claims lapse after `claimMs` and another relay takes them,
   * so they count as lost (unreported): a publish that returns late sends no more of them.
   */
  close(): void {
    this.#closed = true;
    for (const held of this.#held.values()) {
      held.lost = true;
      this.#pause(held);
    }
  }

  #start(held: Held): void {
    const heartbeat: LeaseHeartbeat = new LeaseHeartbeat(this.#options.clock, this.#everyMs, () =>
      this.#renew(held, heartbeat),
    );
    held.heartbeat = heartbeat;
    heartbeat.start();
  }

  /** One beat; never rejects (LeaseHeartbeat would leave the rejection unhandled). */
  async #renew(held: Held, heartbeat: LeaseHeartbeat): Promise<void> {
    const { clock, claimMs, maxClaimRenewalMs } = this.#options;
    const now = clock.now();
    if (now - held.since >= maxClaimRenewalMs) {
      this.#lose(held, 'renewal-limit');
      return;
    }
    let live: boolean;
    try {
      live = await this.#options.renew(held.claim.id, now, now + claimMs);
    } catch (error) {
      // The next beat tries again; one past the claim's end finds it gone and reports it then.
      if (held.heartbeat === heartbeat) this.#options.failed(error);
      return;
    }
    // A claim ended (or given up) while this renewal ran is not lost: only a current beat counts.
    if (!live && held.heartbeat === heartbeat) this.#lose(held, 'expired');
  }

  #lose(held: Held, reason: ClaimLossReason): void {
    held.lost = true;
    this.#pause(held);
    this.#options.lost(held.claim, reason);
  }

  /** No beat starts after this; one under way ends on its own (and is ignored: it is no longer current). */
  #pause(held: Held): void {
    void held.heartbeat?.stop();
    held.heartbeat = undefined;
  }

  #forget(held: Held): void {
    if (this.#held.get(held.claim.id) === held) this.#held.delete(held.claim.id);
  }
}
