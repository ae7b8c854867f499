import type { Channel, Options } from 'amqplib';

/** Retention of every stream a broker declares (`x-max-age`, `x-max-length-bytes`). */
export interface StreamRetention {
  /** e.g. `7D`, `12h`, `30m` (RabbitMQ's units Y, M, D, h, m, s). Default: no age limit. */
  maxAge?: string;
  /** Bytes kept per stream; the oldest segments go first. Default: no size limit. */
  maxLengthBytes?: number;
}

/**
 * Declares streams, and the two queues behind each consumer group, idempotently, once per
 * connection. A stream is durable with `x-queue-type: stream`; a group's lock is a durable
 * classic queue (exclusive consumers are enforced there), its offsets a durable quorum queue.
 */
export class StreamTopology {
  readonly #retention: StreamRetention;
  readonly #declared = new Set<string>();
  /** Every queue declared, for tests and tooling that clean up. */
  readonly names = new Set<string>();

  constructor(retention: StreamRetention = {}) {
    this.#retention = retention;
  }

  reset(): void {
    this.#declared.clear();
  }

  async stream(channel: Channel, name: string): Promise<void> {
    const args: Record<string, unknown> = { 'x-queue-type': 'stream' };
    if (this.#retention.maxAge !== undefined) args['x-max-age'] = this.#retention.maxAge;
    if (this.#retention.maxLengthBytes !== undefined)
      args['x-max-length-bytes'] = this.#retention.maxLengthBytes;
    await this.#assert(channel, name, { durable: true, arguments: args });
  }

  /** A group's lock and offsets queues; `force`: declared even if this connection did already. */
  async groupQueues(
    channel: Channel,
    lock: string,
    offsets: string,
    options: { force?: boolean } = {},
  ): Promise<void> {
    const force = options.force ?? false;
    await this.#assert(channel, lock, { durable: true, arguments: { 'x-queue-type': 'classic' } }, force);
    await this.#assert(channel, offsets, { durable: true, arguments: { 'x-queue-type': 'quorum' } }, force);
  }

  async #assert(channel: Channel, name: string, options: Options.AssertQueue, force = false): Promise<void> {
    if (!force && this.#declared.has(name)) return;
    await channel.assertQueue(name, options);
    this.#declared.add(name);
    this.names.add(name);
  }
}
