// The publish of one claimed batch (a round): each destination's rows in `seq` order through the
// breaker, and what the round published, for its mark. Claiming and marking are the relay's
// (outbox-relay.ts); what a failed publish does to its rows is outbox-relay-failures.ts's.
import type { Envelope } from '../messaging/envelope.ts';
import { envelopeFromRow } from '../messaging/envelope-row.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { BrokenCircuitError, IsolatedCircuitError, type CircuitBreakerPolicy } from '../resilience/index.ts';
import type { ClaimRenewals } from './outbox-claim-renewals.ts';
import { groupByDestination, type Claim, type Marks, type OutboxRow } from './outbox-claims.ts';
import type { PublishFailures } from './outbox-relay-failures.ts';
import { publishFailed, type RelayHealth } from './relay-health.ts';

/** A claim on its way: the rows published so far and what went to each destination. */
export interface Round {
  claim: Claim;
  published: OutboxRow[];
  sent: { destination: string; messages: readonly Envelope[] }[];
  /** False when a publish failed or was refused by the breaker, or the claim was lost: the rest was not tried. */
  ok: boolean;
}

/** The mark of the rounds' published rows, which ends their claims and the `released` ones. */
export function marksOf(rounds: readonly Round[], released: readonly string[]): Marks {
  return {
    seqs: rounds.flatMap((r) => r.published.map((row) => row.seq)),
    claimIds: [...rounds.map((r) => r.claim.id), ...released],
  };
}

export interface RoundPublisherOptions {
  publisher: Publisher;
  /** The breaker every publish goes through. */
  breaker: CircuitBreakerPolicy;
  /** Tells a claim lost: no more of its rows are published. */
  renewals: ClaimRenewals;
  failures: PublishFailures;
  /** Where each publish's outcome goes, for the relay's `health()`. */
  health: RelayHealth<'broker'>;
}

export class RoundPublisher {
  readonly #publisher: Publisher;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #renewals: ClaimRenewals;
  readonly #failures: PublishFailures;
  readonly #health: RelayHealth<'broker'>;
  /** Claims whose rows are being published now. */
  readonly #publishing = new Set<string>();

  constructor(options: RoundPublisherOptions) {
    this.#publisher = options.publisher;
    this.#breaker = options.breaker;
    this.#renewals = options.renewals;
    this.#failures = options.failures;
    this.#health = options.health;
  }

  /** Whether the claim's rows are being published now (not claimed ahead, not waiting for their mark). */
  isPublishing(claimId: string): boolean {
    return this.#publishing.has(claimId);
  }

  /**
   * Publishes a claim's rows, each destination's in `seq` order: runs of rows never tried go in
   * one call, a row that failed before goes alone. Stops at the first failure, or once the claim
   * is lost (another relay may be publishing the same rows); the rows not published go back when
   * the claim ends.
   */
  async publish(claim: Claim): Promise<Round> {
    this.#publishing.add(claim.id);
    try {
      return await this.#publishRows(claim);
    } finally {
      this.#publishing.delete(claim.id);
    }
  }

  async #publishRows(claim: Claim): Promise<Round> {
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
    const closedBefore = this.#breaker.state.status === 'closed';
    try {
      await this.#breaker.execute(() => this.#publisher.publish(destination, messages));
      this.#health.succeeded('broker');
      return messages;
    } catch (error) {
      publishFailed(this.#health, error);
      // Not tried: the rows go back as they were when the claim ends.
      if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) return undefined;
      await this.#failures.record(claimId, destination, rows, messages, error, closedBefore);
      return undefined;
    }
  }
}
