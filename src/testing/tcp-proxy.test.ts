import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors/index.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An echo server on a free port: what it is sent comes back. */
async function echoServer(): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return server;
}

async function proxyTo(server: Server): Promise<TcpProxy> {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  const proxy = await startTcpProxy({ port: address.port });
  cleanups.push(() => proxy.close());
  return proxy;
}

/** Connects through the proxy; resolves with the socket once connected. */
async function client(proxy: TcpProxy): Promise<Socket> {
  const socket = connect({ host: proxy.host, port: proxy.port });
  socket.on('error', () => {});
  cleanups.push(async () => void socket.destroy());
  await once(socket, 'connect');
  return socket;
}

/** Resolves when `socket` closes (`once` would reject on the reset's 'error'). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.on('close', () => resolve()));
}

async function echo(socket: Socket, text: string): Promise<string> {
  socket.write(text);
  const [data] = (await once(socket, 'data')) as [Buffer];
  return data.toString();
}

describe('startTcpProxy', () => {
  it('forwards both ways; cut() ends every connection and refuses new ones until restore()', async () => {
    const proxy = await proxyTo(await echoServer());
    const first = await client(proxy);
    expect(await echo(first, 'hello')).toBe('hello');
    expect(proxy.connections).toBe(1);

    const firstClosed = closed(first);
    proxy.cut();
    expect(proxy.isCut).toBe(true);
    await firstClosed;
    expect(proxy.connections).toBe(0);

    // Accepted by the system, then reset at once: nothing reaches the server.
    const refused = connect({ host: proxy.host, port: proxy.port });
    refused.on('error', () => {});
    await closed(refused);
    expect(proxy.connections).toBe(0);

    proxy.restore();
    const second = await client(proxy);
    expect(await echo(second, 'again')).toBe('again');
    expect(proxy.connections).toBe(1);
  });

  it('silence() carries nothing either way and fails nothing; restore() delivers what was held, in order', async () => {
    const proxy = await proxyTo(await echoServer());
    const open = await client(proxy);
    expect(await echo(open, 'before')).toBe('before');

    proxy.silence();
    expect(proxy.isSilent).toBe(true);
    const received: string[] = [];
    open.on('data', (data: Buffer) => received.push(data.toString()));
    open.write('one ');
    open.write('two');
    // A connection opened meanwhile is accepted and held silent too.
    const late = await client(proxy);
    late.write('late');
    // Loopback delivers within a few turns of the event loop; nothing may arrive, nothing fail.
    for (let turn = 0; turn < 50; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(received).toEqual([]);
    expect(open.destroyed).toBe(false);
    expect(proxy.connections).toBe(2);

    const lateEcho = once(late, 'data') as Promise<[Buffer]>;
    proxy.restore();
    expect(proxy.isSilent).toBe(false);
    await new Promise<void>((resolve) => {
      const check = (): void => (received.join('') === 'one two' ? resolve() : void open.once('data', check));
      check();
    });
    expect((await lateEcho)[0].toString()).toBe('late');
    expect(await echo(open, 'after')).toBe('after');
  });

  it('close() ends every connection and stops listening', async () => {
    const proxy = await proxyTo(await echoServer());
    const socket = await client(proxy);
    const socketClosed = closed(socket);
    await proxy.close();
    await socketClosed;
    await proxy.close();
    const error = await new Promise<unknown>((resolve) => {
      const late = connect({ host: proxy.host, port: proxy.port });
      late.on('error', resolve);
      late.on('connect', () => resolve(undefined));
    });
    expect(error).toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('refuses a port that is not one, naming it', async () => {
    await expect(startTcpProxy({ port: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(startTcpProxy({ port: 70_000 })).rejects.toThrow(/port/);
  });
});
