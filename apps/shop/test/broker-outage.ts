import { KeelError } from '../../../src/errors/index.ts';
import type { Envelope, MessageBroker, PublishOptions } from '../../../src/messaging/index.ts';

/**
 * A switch over a shop's broker, for tests of what the shop does while it cannot publish: wrap
 * the broker with `wrap` (openTestShop's `broker` option); while `down` is set every publish
 * rejects as on a broker that went away (`KEEL_BROKER_UNAVAILABLE`). Consuming goes on.
 */
export class BrokerOutage {
  down = false;

  wrap(broker: MessageBroker): MessageBroker {
    const publish = (destination: string, messages: readonly Envelope[], options?: PublishOptions) =>
      this.down
        ? Promise.reject(new KeelError('KEEL_BROKER_UNAVAILABLE', `${broker.name} at 10.0.0.7:5672 refused`))
        : broker.publish(destination, messages, options);
    return {
      name: broker.name,
      capabilities: broker.capabilities,
      publish,
      source: (destination, options) => broker.source(destination, options),
      consumer: (destination, handler, options) => broker.consumer(destination, handler, options),
      redrive: (deadLetterDestination, options) => broker.redrive(deadLetterDestination, options),
      close: () => broker.close(),
    };
  }
}
