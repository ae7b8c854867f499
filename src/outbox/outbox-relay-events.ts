// What the table outbox relay reports, beside the lifecycle events every service emits.
import type { Envelope } from '../messaging/envelope.ts';
import type { ClaimLossReason } from './outbox-claim-renewals.ts';
import type { RelayPublishEvents } from './relay-policy.ts';

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
