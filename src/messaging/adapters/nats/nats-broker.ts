import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import { assertEnvelopeList, redriveLimit } from '../../broker-arguments.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { encode } from './codec.ts';
import { JetStreamContext } from './jetstream-context.ts';
import { assertDestination, assertToken, Names } from './names.ts';
import { assertLease, resolveOptions, type NatsJetStreamBrokerOptions } from './nats-options.ts';
import { NatsSource } from './nats-source.ts';
import type { PublishOutcome } from './pub-acks.ts';
import { redriveDeadLetters } from './redrive.ts';
import { replayStream, type ReplayedMessage, type ReplayOptions } from './replay.ts';

const capabilities: BrokerCapabilities = {
  // Competing members of one durable consumer get a key's messages in parallel, and a NAKed
  // message comes back after later ones. JetStream 2.9 has no per-key lock or pinned member.
  ordering: 'none',
  // Limits retention: acknowledged messages stay in the stream; `replay` reads them again.
  replayable: true,
  // Each group is a durable consumer of its own, and each gets every message.
  consumerGroups: true,
  // A NAK with a delay: JetStream delivers the message again when the delay is over.
  redeliversOnNack: true,
  // The server this is built for (2.9) cannot hold a message back until a time (2.12 can).
  delayedDelivery: false,
};

/**
 * NATS JetStream behind keel's `MessageBroker`: one stream per destination (file storage,
 * limits retention), one durable pull consumer per group, NAK with delay for retries, a
 * `<destination>.dead-letter` stream, redrive and replay. See docs/nats-jetstream.md.
 *
 * `publish` resolves when JetStream acknowledged every message: stored on the stream's leader
 * (and, with replicas, on a majority), in the server's file store; on disk only as the
 * server's sync settings say.
 */
export class NatsJetStreamBroker implements MessageBroker {
  readonly name = 'nats-jetstream';
  readonly capabilities = capabilities;
  readonly #context: JetStreamContext;

  constructor(options: NatsJetStreamBrokerOptions = {}) {
    const o = resolveOptions(options);
    this.#context = new JetStreamContext(o, new Names(o.prefix), options.connection);
  }

  /** The stream that holds a destination: `keel_orders`, `keel_orders~dead-letter`. */
  streamName(destination: string): string {
    assertDestination(destination);
    return this.#context.names.stream(destination);
  }

  /** The subject a destination's messages are published on: `keel.orders`. */
  subject(destination: string): string {
    assertDestination(destination);
    return this.#context.names.subject(destination);
  }

  /** Every stream this broker declared so far. */
  declaredStreams(): string[] {
    return this.#context.declaredStreams();
  }

  /**
   * Publishes every message at once (one JetStream publish each, `Nats-Msg-Id` = the envelope id,
   * so a re-publish within the duplicate window is dropped) and resolves when every one was
   * acknowledged. Rejects with `PublishError` naming those that were not.
   */
  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    assertDestination(destination);
    assertEnvelopeList(messages);
    const availableAt = options.availableAt;
    if (availableAt !== undefined) {
      if (!Number.isFinite(availableAt)) {
        throw new InvalidArgumentError('availableAt', 'a time in ms since the epoch', availableAt);
      }
      if (availableAt > this.#context.o.clock.now()) {
        throw new InvalidArgumentError(
          'availableAt',
          'a time not in the future: NATS JetStream declares delayedDelivery: false',
          availableAt,
        );
      }
    }
    if (messages.length === 0) return;
    // Encoding validates headers: bad input fails before anything is sent.
    const encoded = messages.map((message) => encode(message));
    const context = this.#context;
    if (context.closed) {
      throw new PublishError(
        destination,
        messages.map((m) => m.id),
        new KeelError('KEEL_SERVICE_STATE', 'the NATS JetStream broker is closed'),
      );
    }
    let outcomes: PublishOutcome[];
    try {
      outcomes = await context.publishAll(
        destination,
        encoded.map((e, i) => ({ encoded: e, msgID: messages[i]!.id })),
      );
    } catch (error) {
      throw new PublishError(
        destination,
        messages.map((m) => m.id),
        error,
      );
    }
    const failed: string[] = [];
    let cause: unknown;
    outcomes.forEach((outcome, i) => {
      if (outcome.ok) return;
      failed.push(messages[i]!.id);
      cause ??= outcome.error;
    });
    if (failed.length > 0) {
      // The stream may have been deleted: declare it again next time.
      context.forgetStream(destination);
      throw new PublishError(destination, failed, cause);
    }
  }

  /** A new member of `destination`'s group (default the broker's): each call is a new consumer. */
  source(destination: string, options: SourceOptions = {}): NatsSource {
    assertDestination(destination);
    const group = options.group ?? this.#context.o.group;
    assertToken(group, 'group');
    const leaseMs = options.leaseMs ?? this.#context.o.leaseMs;
    assertLease(leaseMs);
    const deadLetterDestination = options.deadLetterDestination ?? `${destination}.dead-letter`;
    assertDestination(deadLetterDestination, 'deadLetterDestination');
    if (this.#context.closed)
      throw new KeelError('KEEL_SERVICE_STATE', 'the NATS JetStream broker is closed');
    return new NatsSource(destination, { context: this.#context, group, leaseMs, deadLetterDestination });
  }

  /** A consumer running `handler` over a new source. Start it to begin. */
  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    const source = this.source(destination, options);
    return new QueueConsumer(source, handler, { clock: this.#context.o.clock, ...options });
  }

  /**
   * Moves up to `limit` dead letters (oldest first) to `to`, or to the destination each came from
   * (`x-dead-letter-source`), through the dead-letter stream's group (the broker's): a copy without
   * the `x-dead-letter-*` headers and with a fresh attempt count is acknowledged by the target's
   * stream before the dead letter is acked. One with neither `to` nor a source stays.
   */
  async redrive(
    deadLetterDestination: string,
    options: { to?: string; limit?: number } = {},
  ): Promise<number> {
    assertDestination(deadLetterDestination, 'deadLetterDestination');
    if (options.to !== undefined) assertDestination(options.to, 'to');
    const limit = redriveLimit(options.limit);
    return redriveDeadLetters(this.#context, deadLetterDestination, { to: options.to, limit });
  }

  /**
   * Reads a destination's stream again, oldest first, whether or not any group has acknowledged
   * the messages: from a stream sequence (inclusive), or from a time (the first message stored at
   * or after it), or from the start. Ends at the last message stored when it began.
   */
  replay(destination: string, options: ReplayOptions = {}): AsyncGenerator<ReplayedMessage> {
    assertDestination(destination);
    return replayStream(this.#context, destination, options);
  }

  /** Closes the connection if the broker opened it (draining it first). Stop consumers first. */
  async close(): Promise<void> {
    await this.#context.close();
  }
}
