export { addToOutbox, outbox, type OutboxExecutor, type AddToOutboxOptions } from './outbox.ts';
export { OutboxRelay, type OutboxRelayOptions, type OutboxRelayEvents } from './outbox-relay.ts';
export { outboxStatus, retryParked, type OutboxStatus } from './outbox-status.ts';
export { inbox, inboxOnce, pruneInbox, type InboxOutcome, type PruneInboxOptions } from './inbox.ts';
export { pruneOutbox, type PruneOptions } from './outbox-retention.ts';
export { outboxMigrations, outboxChannel, inboxMigrations } from './schema.ts';
