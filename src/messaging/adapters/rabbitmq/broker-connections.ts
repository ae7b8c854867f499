import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import { Confirmer } from './confirm-channel.ts';
import { LazyConnection, publishWriteBufferBytes } from './connection.ts';

/** The `url` option of a RabbitMQ broker: default `KEEL_RABBITMQ_URL`, else the local server. */
export function resolveRabbitMqUrl(url: string | undefined): string {
  const resolved = url ?? process.env['KEEL_RABBITMQ_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
  if (typeof resolved !== 'string' || !/^amqps?:\/\//.test(resolved)) {
    throw new InvalidArgumentError('url', 'an amqp:// or amqps:// URL', resolved);
  }
  return resolved;
}

export interface BrokerConnectionsSettings {
  url: string;
  connectTimeoutMs: number;
  heartbeatSeconds: number;
  /** The connections are named `<name> publish` and `<name> consume` in RabbitMQ. */
  name: string;
  clock: Clock;
  /** How long a publish on the shared channel waits for its confirms, ms. */
  confirmTimeoutMs: number;
  /** What was declared over the publish connection; forgotten when it is lost, so it is declared again. */
  publishTopology: { reset(): void };
  /** The same for the consume connection. */
  consumeTopology: { reset(): void };
}

/**
 * A RabbitMQ broker's two connections — one publishes, one consumes, so the broker's flow
 * control on a busy publisher never stalls acks — and the one confirm channel its publishes
 * share, opened on first use and again after it closed.
 */
export class BrokerConnections {
  readonly publish: LazyConnection;
  readonly consume: LazyConnection;
  readonly #clock: Clock;
  readonly #confirmTimeoutMs: number;
  #publisher: Promise<Confirmer> | undefined;

  constructor(settings: BrokerConnectionsSettings) {
    this.#clock = settings.clock;
    this.#confirmTimeoutMs = settings.confirmTimeoutMs;
    const connection = {
      url: settings.url,
      connectTimeoutMs: settings.connectTimeoutMs,
      heartbeatSeconds: settings.heartbeatSeconds,
    };
    this.publish = new LazyConnection({
      ...connection,
      name: `${settings.name} publish`,
      writeBufferBytes: publishWriteBufferBytes,
    });
    this.consume = new LazyConnection({ ...connection, name: `${settings.name} consume` });
    this.publish.onLost(() => {
      this.#publisher = undefined;
      settings.publishTopology.reset();
    });
    this.consume.onLost(() => settings.consumeTopology.reset());
  }

  /** The shared publish channel; concurrent callers share one opening, a failed one is forgotten. */
  publishChannel(): Promise<Confirmer> {
    const existing = this.#publisher;
    if (existing !== undefined) return existing;
    const opening = (async () => {
      const connection = await this.publish.get();
      const channel = await connection.createConfirmChannel();
      const confirmer = new Confirmer(channel, this.#clock, this.#confirmTimeoutMs);
      channel.on('close', () => {
        if (this.#publisher === opening) this.#publisher = undefined;
      });
      return confirmer;
    })();
    void opening.catch(() => {
      if (this.#publisher === opening) this.#publisher = undefined;
    });
    this.#publisher = opening;
    return opening;
  }

  /** Closes the publish channel (once its opening settled), then both connections. */
  async close(): Promise<void> {
    const publisher = this.#publisher;
    this.#publisher = undefined;
    await (await publisher?.catch(() => undefined))?.close();
    await this.publish.close();
    await this.consume.close();
  }
}
