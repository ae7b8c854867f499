export { addToOutbox, outbox } from './outbox.ts';
export { OutboxRelay, type OutboxRelayOptions, type OutboxRelayEvents } from './outbox-relay.ts';
export { outboxMigrations, outboxChannel } from './schema.ts';
