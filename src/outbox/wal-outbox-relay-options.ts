// The WAL outbox relay's options, each with its default, checked once when the relay is built
// (resolveWalOutboxRelayOptions), so the relay's parts take plain values that are known to be valid.
import { InvalidArgumentError } from '../errors/index.ts';
import type { Clock } from '../time/index.ts';
import { positiveInteger, relayPolicy, type RelayPolicy, type RelayPolicyOptions } from './relay-policy.ts';
import { defaultWalOutboxPrefix } from './wal-outbox.ts';
import { walOutboxSlotNames, type WalOutboxSlotOptions } from './wal-outbox-slot.ts';

export interface WalOutboxRelayOptions extends WalOutboxSlotOptions, RelayPolicyOptions {
  /**
   * The server to stream from, as a connection string: the same server `db` reaches (its user
   * needs the REPLICATION attribute, and pg_hba.conf must allow it a `replication` connection).
   */
  connectionString: string;
  /** The logical-message prefix `addToWalOutbox` wrote under. Default `keel_outbox`. */
  prefix?: string;
  /** Most messages per publish call; a batch ends on a transaction's boundary when it can. Default 500. */
  batchSize?: number;
  /**
   * Messages received and not yet published above which the relay stops reading the stream
   * until the publisher catches up (the server then holds the rest). Default 10 000.
   */
  maxBuffered?: number;
  /** Wait before streaming again after the stream broke, or while another relay holds the slot. Default 1 000 ms. */
  reconnectMs?: number;
  /**
   * How long `stop()` waits, once the relay's stream ended, for the server to report the slot let
   * go (its walsender can hold it a moment longer), so a relay started right after takes it at its
   * first try. 0: no wait. Default 5 000 ms.
   */
  slotReleaseMs?: number;
  /**
   * How long a stream may hear nothing from the server while the relay reads it before the relay
   * takes it for dead, ends it and streams again, as PostgreSQL's standbys do after
   * `wal_receiver_timeout`: a network that drops packets without a reset, or a server process
   * that stopped, leaves the socket open for as long as TCP keeps trying (about fifteen minutes).
   * The relay asks the server for an answer at least every third of it. A publish or a statement
   * of the relay's still unanswered after it makes `health()` failing (it hangs). Default 30 000 ms.
   */
  receiveTimeoutMs?: number;
}

/** `WalOutboxRelayOptions` with every default applied (see there for what each means). */
export interface ResolvedWalOutboxRelayOptions extends RelayPolicy {
  readonly connectionString: string;
  readonly slotName: string;
  readonly publicationName: string;
  readonly prefix: string;
  readonly batchSize: number;
  readonly maxBuffered: number;
  readonly reconnectMs: number;
  readonly slotReleaseMs: number;
  readonly receiveTimeoutMs: number;
}

/**
 * The options checked, in this order, with their defaults; bad ones fail with
 * `KEEL_INVALID_ARGUMENT` naming them. The default breaker runs on `clock`.
 */
export function resolveWalOutboxRelayOptions(
  options: WalOutboxRelayOptions,
  clock: Clock,
): ResolvedWalOutboxRelayOptions {
  if (typeof options?.connectionString !== 'string' || options.connectionString.length === 0) {
    throw new InvalidArgumentError(
      'connectionString',
      'a PostgreSQL connection string',
      options?.connectionString,
    );
  }
  const { slotName, publicationName } = walOutboxSlotNames(options);
  const prefix = options.prefix ?? defaultWalOutboxPrefix;
  if (typeof prefix !== 'string' || prefix.length === 0) {
    throw new InvalidArgumentError('prefix', 'a non-empty string', prefix);
  }
  const batchSize = positiveInteger('batchSize', options.batchSize ?? 500);
  const maxBuffered = positiveInteger('maxBuffered', options.maxBuffered ?? 10_000);
  const reconnectMs = positiveInteger('reconnectMs', options.reconnectMs ?? 1000);
  const slotReleaseMs = options.slotReleaseMs ?? 5000;
  if (!Number.isInteger(slotReleaseMs) || slotReleaseMs < 0) {
    throw new InvalidArgumentError('slotReleaseMs', 'an integer >= 0', slotReleaseMs);
  }
  const receiveTimeoutMs = positiveInteger('receiveTimeoutMs', options.receiveTimeoutMs ?? 30_000);
  const { maxAttempts, retryDelay, breaker } = relayPolicy(options, clock);
  return {
    connectionString: options.connectionString,
    slotName,
    publicationName,
    prefix,
    batchSize,
    maxBuffered,
    reconnectMs,
    slotReleaseMs,
    receiveTimeoutMs,
    maxAttempts,
    retryDelay,
    breaker,
  };
}
