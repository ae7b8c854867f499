export {
  addToOutbox,
  outbox,
  type OutboxExecutor,
  type OutboxWriter,
  type AddToOutboxOptions,
} from './outbox.ts';
export { OutboxRelay, type OutboxRelayOptions, type OutboxRelayEvents } from './outbox-relay.ts';
export {
  outboxBacklog,
  outboxStatus,
  retryParked,
  retryParkedById,
  type OutboxBacklog,
  type OutboxStatus,
  type OutboxStatusEstimate,
  type OutboxStatusOptions,
  type NotParkedState,
} from './outbox-status.ts';
export {
  inbox,
  inboxOnce,
  pruneInbox,
  type InboxExecutor,
  type InboxOutcome,
  type PruneInboxOptions,
} from './inbox.ts';
export { pruneOutbox, type PruneOptions } from './outbox-retention.ts';
export { outboxMigrations, outboxChannel, inboxMigrations } from './schema.ts';
export {
  addToWalOutbox,
  walOutbox,
  defaultWalOutboxPrefix,
  type AddToWalOutboxOptions,
} from './wal-outbox.ts';
export { WalOutboxRelay, type WalOutboxRelayOptions, type WalOutboxRelayEvents } from './wal-outbox-relay.ts';
export {
  drainWalOutbox,
  walOutboxDrainPrefix,
  type DrainWalOutboxOptions,
  type WalOutboxDrainProgress,
} from './wal-outbox-drain.ts';
export {
  ensureWalOutboxSlot,
  dropWalOutboxSlot,
  walOutboxStatus,
  type WalOutboxSlotOptions,
  type WalOutboxStatus,
} from './wal-outbox-slot.ts';
