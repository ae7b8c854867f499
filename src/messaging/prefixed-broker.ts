import { InvalidArgumentError } from '../errors/index.ts';
import type { MessageBroker, PublishOptions, SourceOptions } from './broker.ts';
import type { DeliverySource } from './delivery-source.ts';
import type { Envelope } from './envelope.ts';
import type { Handler } from './handler.ts';
import type { QueueConsumer, QueueConsumerOptions } from './queue-consumer.ts';

/**
 * The same broker with every destination name prefixed: `orders` becomes `<prefix>orders`, its
 * dead letters `<prefix>orders.dead-letter`. Several deployments (staging beside production, a
 * test run beside another) then share one server without reading each other's messages, and the
 * application keeps its own names. Closing it closes the broker.
 */
export function withDestinationPrefix(broker: MessageBroker, prefix: string): MessageBroker {
  if (typeof prefix !== 'string' || !/^[A-Za-z0-9._-]+$/.test(prefix)) {
    throw new InvalidArgumentError('prefix', 'letters, digits, ".", "_" or "-"', prefix);
  }
  const named = (destination: string): string => prefix + destination;
  const sourceOptions = <O extends SourceOptions>(options: O | undefined): O | undefined =>
    options?.deadLetterDestination === undefined
      ? options
      : { ...options, deadLetterDestination: named(options.deadLetterDestination) };
  return {
    name: broker.name,
    capabilities: broker.capabilities,
    publish(destination: string, messages: readonly Envelope[], options?: PublishOptions): Promise<void> {
      return broker.publish(named(destination), messages, options);
    },
    source(destination: string, options?: SourceOptions): DeliverySource {
      return broker.source(named(destination), sourceOptions(options));
    },
    consumer(
      destination: string,
      handler: Handler,
      options?: QueueConsumerOptions & SourceOptions,
    ): QueueConsumer {
      return broker.consumer(named(destination), handler, sourceOptions(options));
    },
    redrive(deadLetterDestination: string, options: { to?: string; limit?: number } = {}): Promise<number> {
      return broker.redrive(named(deadLetterDestination), {
        ...options,
        ...(options.to === undefined ? {} : { to: named(options.to) }),
      });
    },
    close: () => broker.close(),
  };
}
