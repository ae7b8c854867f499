// Test helpers for suites that run against a real NATS server. Not part of the public door.
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startTcpProxy, type TcpProxy } from '../../../testing/tcp-proxy.ts';

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
 * A TCP proxy in front of the NATS server, for a test that cuts its own client's link without
 * touching the server that other test files (and other people) are using.
 */
export function startNatsProxy(): Promise<TcpProxy> {
  return startTcpProxy(hostPort(natsUrl));
}

/** Where a client connects to go through `proxy`: its `servers` option. */
export function proxyServers(proxy: TcpProxy): string {
  return `${proxy.host}:${proxy.port}`;
}

/**
 * Drops every connection through `proxy` at once and lets the next ones through: what a server
 * restart looks like to its clients. Returns how many client connections it dropped.
 */
export function dropConnections(proxy: TcpProxy): number {
  const dropped = proxy.connections;
  proxy.cut();
  proxy.restore();
  return dropped;
}
