import type {
  DeliverySource,
  Envelope,
  Handler,
  MessageBroker,
  PublishOptions,
  QueueConsumer,
  QueueConsumerOptions,
  SourceOptions,
} from '../../../src/messaging/index.ts';

/** A message a broker accepted, and the destination it was published to. */
export interface PublishedMessage {
  destination: string;
  message: Envelope;
}

/**
 * What a shop's broker was given to publish, for contract tests: wrap the broker with `wrap`
 * (openTestShop's `broker` option) and read `published`. Only batches the broker accepted are
 * noted: a refused one is published again by the relay, and noted then.
 */
export class PublishLog {
  readonly published: PublishedMessage[] = [];

  wrap(broker: MessageBroker): MessageBroker {
    const published = this.published;
    return {
      name: broker.name,
      capabilities: broker.capabilities,
      async publish(destination: string, messages: readonly Envelope[], options?: PublishOptions) {
        await broker.publish(destination, messages, options);
        for (const message of messages) published.push({ destination, message });
      },
      source: (destination: string, options?: SourceOptions): DeliverySource =>
        broker.source(destination, options),
      consumer: (
        destination: string,
        handler: Handler,
        options?: QueueConsumerOptions & SourceOptions,
      ): QueueConsumer => broker.consumer(destination, handler, options),
      redrive: (deadLetterDestination: string, options?: { to?: string; limit?: number }) =>
        broker.redrive(deadLetterDestination, options),
      close: () => broker.close(),
    };
  }
}
