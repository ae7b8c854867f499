// Test helpers for suites that run against a real NATS server. Not part of the public door.
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

export const natsUrl = process.env['KEEL_NATS_URL'] ?? '127.0.0.1:4222';

function hostPort(url: string): { host: string; port: number } {
  const parsed = new URL(url.includes('://') ? url : `nats://${url}`);
  return { host: parsed.hostname, port: Number(parsed.port || 4222) };
}

/** A prefix of this test run's own: concurrent runs never share a stream. */
export function testPrefix(): string {
  return `keeltest-${randomBytes(4).toString('hex')}`;
}

/** Fails, naming the server, when NATS with JetStream cannot be reached: never a silent skip. */
export async function requireNats(): Promise<void> {
  try {
    const nc = await connect({ servers: natsUrl, timeout: 3000, maxReconnectAttempts: 0 });
    try {
      await (await jetstreamManager(nc)).getAccountInfo();
    } finally {
      await nc.close();
    }
  } catch (error) {
    throw new Error(
      `NATS with JetStream at ${natsUrl} is not reachable (${String(error)}); start nats-server -js or set KEEL_NATS_URL`,
      { cause: error },
    );
  }
}

/** Deletes every stream whose name starts with `<prefix>_` (the streams of one test run). */
export async function deleteStreamsWithPrefix(prefix: string): Promise<number> {
  return deleteStreamsNamed((name) => name.startsWith(`${prefix}_`));
}

/** Deletes every stream whose name `matches`; resolves with how many it deleted. */
export async function deleteStreamsNamed(matches: (name: string) => boolean): Promise<number> {
  const nc = await connect({ servers: natsUrl, timeout: 3000, maxReconnectAttempts: 0 });
  let deleted = 0;
  try {
    const jsm = await jetstreamManager(nc);
    const names: string[] = [];
    for await (const name of jsm.streams.names()) if (matches(name)) names.push(name);
    for (const name of names) {
      if (await jsm.streams.delete(name).catch(() => false)) deleted++;
    }
  } finally {
    await nc.close();
  }
  return deleted;
}

/**
 * A TCP relay in front of the NATS server. `cut()` closes every connection through it at once,
 * which is what a server restart or a network cut looks like to the client, without touching
 * the server that other test files (and other people) are using.
 */
export class CuttableProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #port = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(target = natsUrl): Promise<CuttableProxy> {
    const { host, port } = hostPort(target);
    let proxy: CuttableProxy | undefined = undefined;
    const server = createServer((client) => {
      const upstream = createConnection({ host, port });
      for (const socket of [client, upstream]) {
        proxy!.#sockets.add(socket);
        socket.on('close', () => proxy!.#sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    proxy = new CuttableProxy(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    proxy.#port = typeof address === 'object' && address !== null ? address.port : 0;
    return proxy;
  }

  get url(): string {
    return `127.0.0.1:${this.#port}`;
  }

  /** Connections open through the relay right now (each client connection counts twice). */
  get open(): number {
    return this.#sockets.size;
  }

  /** Drops every connection; returns how many it dropped. */
  cut(): number {
    const count = this.#sockets.size;
    for (const socket of this.#sockets) socket.destroy();
    return count;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
