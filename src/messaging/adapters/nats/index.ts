// keel/messaging/nats: NATS JetStream behind keel's MessageBroker. The only place keel imports
// the NATS client.
export { NatsJetStreamBroker } from './nats-broker.ts';
export type { NatsJetStreamBrokerOptions } from './nats-options.ts';
export { NatsSource, type NatsDelivery } from './nats-source.ts';
export type { ReplayedMessage, ReplayOptions } from './replay.ts';
