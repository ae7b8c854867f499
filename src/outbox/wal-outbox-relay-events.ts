// What the WAL outbox relay reports, beside the lifecycle events every service emits.
import type { LifecycleEvents } from '../service/service.ts';
import type { TypedEvents } from '../service/typed-events.ts';
import type { RelayPublishEvents } from './relay-policy.ts';

/** `published` comes once the broker accepted (the position is confirmed to the server after). */
export interface WalOutboxRelayEvents extends RelayPublishEvents {
  /** Another relay streams from the slot: this one waits and tries again every `reconnectMs`. */
  standby: { slotName: string };
  /** This relay now streams from the slot. */
  streaming: { slotName: string };
}

/** The relay's emitter, as its parts emit on it. */
export type WalOutboxRelayEmitter = TypedEvents<WalOutboxRelayEvents & LifecycleEvents>;
