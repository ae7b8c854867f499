// The table outbox relay's options, each with its default, checked once when the relay is built
// (resolveOutboxRelayOptions), so the relay's parts take plain values that are known to be valid.
import { InvalidArgumentError } from '../errors/index.ts';
import type { Clock } from '../time/index.ts';
import { defaultOutboxRetentionMs } from './outbox-retention.ts';
import { positiveInteger, relayPolicy, type RelayPolicy, type RelayPolicyOptions } from './relay-policy.ts';

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

/** `OutboxRelayOptions` with every default applied (see there for what each means). */
export interface ResolvedOutboxRelayOptions extends RelayPolicy {
  readonly batchSize: number;
  readonly pollIntervalMs: number;
  readonly claimMs: number;
  readonly maxClaimRenewalMs: number;
  readonly retentionMs: number | false;
  /** `retentionMs: 0`: a published row is deleted instead of archived. */
  readonly deleteOnPublish: boolean;
  readonly cleanupIntervalMs: number;
}

/**
 * The options checked, with their defaults; bad ones fail with `KEEL_INVALID_ARGUMENT` naming
 * them. The default breaker runs on `clock`.
 */
export function resolveOutboxRelayOptions(
  options: OutboxRelayOptions,
  clock: Clock,
): ResolvedOutboxRelayOptions {
  const batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
  const pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
  const claimMs = positiveInteger('claimMs', options.claimMs ?? 30_000);
  const maxClaimRenewalMs = positiveInteger('maxClaimRenewalMs', options.maxClaimRenewalMs ?? 300_000);
  const { maxAttempts, retryDelay, breaker } = relayPolicy(options, clock);
  const retentionMs = options.retentionMs ?? defaultOutboxRetentionMs;
  if (retentionMs !== false && (!Number.isFinite(retentionMs) || retentionMs < 0)) {
    throw new InvalidArgumentError('retentionMs', 'a number of ms >= 0, or false', retentionMs);
  }
  const cleanupIntervalMs = positiveInteger('cleanupIntervalMs', options.cleanupIntervalMs ?? 60_000);
  return {
    batchSize,
    pollIntervalMs,
    claimMs,
    maxClaimRenewalMs,
    maxAttempts,
    retryDelay,
    breaker,
    retentionMs,
    deleteOnPublish: retentionMs === 0,
    cleanupIntervalMs,
  };
}
