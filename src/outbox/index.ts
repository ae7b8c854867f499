export { addToOutbox, outbox } from './outbox.ts';
export { OutboxRelay, type OutboxRelayOptions, type OutboxRelayEvents } from './outbox-relay.ts';
export { outboxStatus, retryParked, type OutboxStatus } from './outbox-status.ts';
export { inbox, inboxOnce, pruneInbox, type InboxOutcome } from './inbox.ts';
export { outboxMigrations, outboxChannel, inboxMigrations } from './schema.ts';
