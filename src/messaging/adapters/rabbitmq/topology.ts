import type { Channel, Options } from 'amqplib';
import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';

export type QueueType = 'quorum' | 'classic';

const queueName = /^[A-Za-z0-9_.:-]{1,200}$/;

export function assertDestination(name: unknown, field = 'destination'): asserts name is string {
  if (typeof name !== 'string' || !queueName.test(name)) {
    throw new InvalidArgumentError(field, 'a queue name of [A-Za-z0-9_.:-], 1-200 chars', name);
  }
}

/**
 * Rounds a delay up to two significant digits (1 234 ms → 1 300 ms), so retries and delayed
 * publishes share a bounded set of delay queues: at most ~90 per decade of delay, each no more
 * than 10 % late. Delays under 100 ms are kept exact; 0 or less means no delay.
 */
export function delayBucket(delayMs: number): number {
  if (!(delayMs > 0)) return 0;
  const ms = Math.ceil(delayMs);
  if (ms < 100) return ms;
  const unit = 10 ** (Math.floor(Math.log10(ms)) - 1);
  return Math.ceil(ms / unit) * unit;
}

export function delayQueueName(destination: string, bucketMs: number): string {
  return `${destination}.delay.${bucketMs}`;
}

/** An unused delay queue is deleted by the server after this long; redeclaring renews it. */
function delayQueueExpiry(bucketMs: number): number {
  return 2 * bucketMs + 120_000;
}

/**
 * Declares queues idempotently, once per connection (and delay queues again before their
 * server-side expiry would come near). Every keel queue is durable; quorum queues by default.
 */
export class Topology {
  readonly #type: QueueType;
  readonly #clock: Clock;
  /** Per-key mode: every work queue is a partition, consumed by one consumer at a time. */
  readonly #singleActiveConsumer: boolean;
  /** Name → when it was declared (ms). */
  readonly #declared = new Map<string, number>();
  /** Every queue this topology declared, for tests and tooling that clean up. */
  readonly names = new Set<string>();

  constructor(type: QueueType, clock: Clock, options: { singleActiveConsumer?: boolean } = {}) {
    this.#type = type;
    this.#clock = clock;
    this.#singleActiveConsumer = options.singleActiveConsumer ?? false;
  }

  /** Forgets what was declared: after a reconnect the server may have lost non-durable state. */
  reset(): void {
    this.#declared.clear();
  }

  /**
   * A work queue: a destination or a dead-letter destination (in per-key mode, one partition of
   * either, with `x-single-active-consumer`: RabbitMQ delivers it to one consumer at a time and
   * fails over to the next when that one's channel closes).
   */
  async queue(channel: Channel, name: string, options: { force?: boolean } = {}): Promise<void> {
    const args = this.#baseArguments();
    if (this.#singleActiveConsumer) args['x-single-active-consumer'] = true;
    await this.#assert(channel, name, { durable: true, arguments: args }, options.force);
  }

  /** Declares `name` again on next use: it turned out missing (deleted behind keel's back). */
  forget(name: string): void {
    this.#declared.delete(name);
  }

  /**
   * The queue that holds messages for `bucketMs` and then dead-letters them back to
   * `destination`. Every message in it has the same TTL, so expiry at the head never blocks a
   * shorter delay behind a longer one.
   */
  async delayQueue(channel: Channel, destination: string, bucketMs: number): Promise<string> {
    const name = delayQueueName(destination, bucketMs);
    const expires = delayQueueExpiry(bucketMs);
    const at = this.#declared.get(name);
    // Redeclare well before the server could expire it: publishing alone does not count as use.
    if (at !== undefined && this.#clock.now() - at < expires / 4) return name;
    const args: Record<string, unknown> = {
      ...this.#baseArguments(),
      'x-message-ttl': bucketMs,
      'x-expires': expires,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': destination,
    };
    if (this.#type === 'quorum') {
      // Quorum queues can dead-letter at-least-once (the default is at-most-once).
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
    await this.#assert(channel, name, { durable: true, arguments: args }, true);
    return name;
  }

  #baseArguments(): Record<string, unknown> {
    return { 'x-queue-type': this.#type };
  }

  async #assert(channel: Channel, name: string, options: Options.AssertQueue, force = false): Promise<void> {
    if (!force && this.#declared.has(name)) return;
    await channel.assertQueue(name, options);
    this.#declared.set(name, this.#clock.now());
    this.names.add(name);
  }
}
