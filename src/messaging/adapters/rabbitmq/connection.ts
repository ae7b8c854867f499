import { connect, type ChannelModel } from 'amqplib';

/**
 * A publishing connection's socket buffer: a batch of 1 000 messages of ~400 B on the wire fits,
 * so it goes out in one corked write; bigger batches go out 1 MiB at a time.
 */
export const publishWriteBufferBytes = 1 << 20;

export interface ConnectionSettings {
  url: string;
  /** TCP connect and AMQP handshake budget, ms. */
  connectTimeoutMs: number;
  /** AMQP heartbeat, seconds: how fast a silent broker is noticed. */
  heartbeatSeconds: number;
  /** Connection name shown by `rabbitmqctl list_connections client_properties`. */
  name: string;
  /**
   * The socket's write buffer, bytes, before it pushes back (Node's default is 16 KiB). A
   * publishing connection takes a whole batch (see `Confirmer`), so the batch leaves in a few
   * socket writes instead of stopping every ~40 messages for the socket to drain.
   */
  writeBufferBytes?: number;
}

/**
 * One lazily opened AMQP connection. Whoever needs it calls `get()`; concurrent callers share
 * one attempt. When the connection closes (broker restart, network, server-side close) the
 * next `get()` opens a new one, and `onLost` listeners hear about it once.
 */
export class LazyConnection {
  readonly #settings: ConnectionSettings;
  #current: Promise<ChannelModel> | undefined;
  #closed = false;
  readonly #lost = new Set<() => void>();

  constructor(settings: ConnectionSettings) {
    this.#settings = settings;
  }

  /** Closed by the application: `get()` rejects from now on. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Listens for the loss of the current connection. Returns the unsubscribe function. */
  onLost(listener: () => void): () => void {
    this.#lost.add(listener);
    return () => this.#lost.delete(listener);
  }

  get(): Promise<ChannelModel> {
    if (this.#closed) return Promise.reject(new Error('connection closed by the application'));
    if (this.#current === undefined) {
      const opening = this.#open();
      this.#current = opening;
      // A failed attempt is forgotten, so the next caller tries again.
      opening.catch(() => {
        if (this.#current === opening) this.#current = undefined;
      });
    }
    return this.#current;
  }

  async #open(): Promise<ChannelModel> {
    const { url, connectTimeoutMs, heartbeatSeconds, name, writeBufferBytes } = this.#settings;
    const target = new URL(url);
    target.searchParams.set('heartbeat', String(heartbeatSeconds));
    const connection = await connect(target.toString(), {
      timeout: connectTimeoutMs,
      clientProperties: { connection_name: name },
      // amqplib hands its socket options to net.connect / tls.connect, and so to the socket.
      ...(writeBufferBytes === undefined ? {} : { writableHighWaterMark: writeBufferBytes }),
    });
    const current = this.#current;
    // Without an 'error' listener a broker-side close would crash the process.
    connection.on('error', () => {});
    connection.on('close', () => {
      if (this.#current === current) this.#current = undefined;
      for (const listener of [...this.#lost]) listener();
    });
    if (this.#closed) {
      await connection.close().catch(() => undefined);
      throw new Error('connection closed by the application');
    }
    return connection;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const current = this.#current;
    this.#current = undefined;
    if (current === undefined) return;
    const connection = await current.catch(() => undefined);
    await connection?.close().catch(() => undefined);
  }
}
