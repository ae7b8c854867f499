import { createServer, connect, type Server, type Socket } from 'node:net';
import { InvalidArgumentError } from '../errors/index.ts';

export interface TcpProxyOptions {
  /** The server to forward to. */
  port: number;
  /** Default `127.0.0.1`. */
  host?: string;
}

/**
 * A TCP forwarder between a client under test and a real server, that can cut the network in
 * between (a reset: what a broker outage or a dropped link looks like to that one client) or
 * silence it (nothing arrives and nothing fails: a network that drops packets), while the shared
 * server (and every other test on it) carries on.
 */
export interface TcpProxy extends AsyncDisposable {
  /** Where clients connect instead of the server: `127.0.0.1`. */
  readonly host: string;
  /** The port the proxy listens on (chosen by the system). */
  readonly port: number;
  /** Client connections forwarded right now. */
  readonly connections: number;
  /** Whether `cut()` is in force. */
  readonly isCut: boolean;
  /** Whether `silence()` is in force. */
  readonly isSilent: boolean;
  /**
   * Destroys every forwarded connection on both sides (the client sees a reset) and refuses new
   * ones (accepted, then reset at once) until `restore()`.
   */
  cut(): void;
  /**
   * Carries no byte either way, with every connection left open: the sender's writes succeed,
   * nothing arrives, nothing fails — a network that drops packets without a reset, or a host
   * that hangs. New connections are accepted and held the same. What is sent meanwhile is kept,
   * and `restore()` delivers it in order, as TCP does once such a network heals.
   */
  silence(): void;
  /**
   * Forwards again: new connections, and the silenced ones (what they held first). Connections
   * cut stay cut: the client reconnects.
   */
  restore(): void;
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 (a free port) forwarding to `options.host:options.port`. */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const { port } = options;
  const host = options.host ?? '127.0.0.1';
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new InvalidArgumentError('port', 'an integer from 1 to 65535', port);
  }
  if (typeof host !== 'string' || host.length === 0) {
    throw new InvalidArgumentError('host', 'a host name or address', host);
  }
  const pairs = new Set<readonly [Socket, Socket]>();
  let isCut = false;
  let isSilent = false;
  /** What each silenced socket was to write, kept for `restore()`. */
  const held = new Map<Socket, Buffer[]>();
  const write = (to: Socket, from: Socket, chunk: Buffer): void => {
    if (isSilent || held.has(to)) {
      const kept = held.get(to) ?? [];
      kept.push(chunk);
      held.set(to, kept);
      return;
    }
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  };
  const server: Server = createServer((client) => {
    if (isCut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host, port });
    const pair = [client, upstream] as const;
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      // A reset, not a FIN: a cut link says nothing, and either side must see it as a failure.
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    };
    // Without listeners a reset on either side would throw from the socket.
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.on('data', (chunk: Buffer) => write(upstream, client, chunk));
    upstream.on('data', (chunk: Buffer) => write(client, upstream, chunk));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  const destroyAll = (): void => {
    for (const [client, upstream] of [...pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    pairs.clear();
    held.clear();
  };
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      isCut = true;
      server.close(() => resolve());
      destroyAll();
    });
    return closing;
  };
  return {
    host: '127.0.0.1',
    port: address.port,
    get connections() {
      return pairs.size;
    },
    get isCut() {
      return isCut;
    },
    get isSilent() {
      return isSilent;
    },
    cut() {
      isCut = true;
      destroyAll();
    },
    silence() {
      isSilent = true;
    },
    restore() {
      if (closing !== undefined) return;
      isCut = false;
      isSilent = false;
      for (const [to, chunks] of [...held]) {
        held.delete(to);
        if (!to.destroyed) for (const chunk of chunks) to.write(chunk);
      }
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
