// What the WAL outbox relay reports, beside the lifecycle events every service emits.
import type { LifecycleEvents } from '../service/service.ts';
import type { TypedEvents } from '../service/typed-events.ts';
import type { RelayPublishEvents } from './relay-policy.ts';
import type { SlotReleaseOutcome } from './wal-outbox-slot-release.ts';

/** `published` comes once the broker accepted (the position is confirmed to the server after). */
export interface WalOutboxRelayEvents extends RelayPublishEvents {
  /** Another relay streams from the slot: this one waits and tries again every `reconnectMs`. */
  standby: { slotName: string };
  /** This relay now streams from the slot. */
  streaming: { slotName: string };
  /**
   * How the wait of `stop()` for the server to let the slot go ended (`stop()` resolves right
   * after): `released`; `timed-out`, `slotReleaseMs` passed with the slot still held (a relay
   * started now may stand by a turn); or `unreachable`, the server could not be asked (`error`).
   * Only a relay that streamed from the slot waits: a standby held nothing and emits nothing.
   */
  'slot-release': { slotName: string; outcome: SlotReleaseOutcome; waitedMs: number; error?: unknown };
}

/** The relay's emitter, as its parts emit on it. */
export type WalOutboxRelayEmitter = TypedEvents<WalOutboxRelayEvents & LifecycleEvents>;
