import net from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpApp } from './http-app.ts';
import { HttpServer } from './http-server.ts';

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** The shop's app with one route, `/v1/things/:id`, that answers the id. */
function appWithARoute() {
  const app = createHttpApp(pino({ level: 'silent' }));
  app.get('/v1/things/:id', async (request) => ({ id: (request.params as { id: string }).id }));
  stops.push(() => app.close());
  return app;
}

describe("the shop's fastify app", () => {
  it('answers a URL with a malformed %-escape with a 400 problem, not fastify’s JSON', async () => {
    const response = await appWithARoute().inject({ url: '/v1/things/%E0%A4%A' });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json()).toEqual({
      type: 'urn:keel:error:keel_validation_failed',
      title: 'Validation failed',
      status: 400,
      detail: 'request URL is invalid: its path has a %-escape that is malformed or not UTF-8',
      code: 'KEEL_VALIDATION_FAILED',
      instance: '/v1/things/%E0%A4%A',
      errors: [{ path: '', message: 'its path has a %-escape that is malformed or not UTF-8' }],
    });
  });

  it('answers a path parameter past maxParamLength with a 400 problem, not fastify’s 414 JSON', async () => {
    const response = await appWithARoute().inject({ url: `/v1/things/${'x'.repeat(101)}` });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json()).toMatchObject({
      code: 'KEEL_VALIDATION_FAILED',
      detail: 'request URL is invalid: a path parameter is longer than 100 characters',
    });
  });

  it('answers a request on a busy keep-alive connection while closing with a 503 problem, and finishes the one running', async () => {
    const app = createHttpApp(pino({ level: 'silent' }));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let started!: () => void;
    const isStarted = new Promise<void>((resolve) => (started = resolve));
    app.get('/slow', async () => {
      started();
      await released;
      return { done: true };
    });
    // Registered after the app's own preClose hook, so it runs once the app counts as closing.
    let closing!: () => void;
    const isClosing = new Promise<void>((resolve) => (closing = resolve));
    app.addHook('preClose', (done) => {
      closing();
      done();
    });
    let arrived = 0;
    let secondArrived!: () => void;
    const isSecondArrived = new Promise<void>((resolve) => (secondArrived = resolve));
    app.server.on('request', () => {
      if (++arrived === 2) secondArrived();
    });
    const server = new HttpServer(app, { port: 0, host: '127.0.0.1' });
    await server.start();
    stops.push(() => server.stop({ drainMs: 1000 }));
    const { hostname, port } = new URL(server.address);

    const socket = net.connect(Number(port), hostname);
    stops.push(async () => void socket.destroy());
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const request = (path: string) => `GET ${path} HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive\r\n\r\n`;
    socket.write(request('/slow'));
    await isStarted;
    const stopped = server.stop({ drainMs: 5000 });
    await isClosing;
    // The second request comes on the same connection, still busy with the first.
    socket.write(request('/v1/things/1'));
    await isSecondArrived;
    release();
    await stopped;
    await ended;

    const [first, second] = responses(received);
    expect(first).toMatchObject({ status: 200, body: { done: true } });
    expect(second?.status).toBe(503);
    expect(second?.headers).toMatchObject({ 'retry-after': '1', connection: 'close' });
    expect(second?.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(second?.body).toEqual({
      type: 'urn:keel:error:keel_shutting_down',
      title: 'Shutting down',
      status: 503,
      detail: 'The server is shutting down; send the request again.',
      code: 'KEEL_SHUTTING_DOWN',
      instance: '/v1/things/1',
    });
  });
});

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** Splits what a connection received into its responses (each with a Content-Length). */
function responses(text: string): RawResponse[] {
  const parsed: RawResponse[] = [];
  let rest = text;
  while (rest.length > 0) {
    const headEnd = rest.indexOf('\r\n\r\n');
    const [statusLine = '', ...lines] = rest.slice(0, headEnd).split('\r\n');
    const headers = Object.fromEntries(
      lines.map((line) => {
        const colon = line.indexOf(':');
        return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
      }),
    );
    const length = Number(headers['content-length']);
    const body = rest.slice(headEnd + 4, headEnd + 4 + length);
    parsed.push({ status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body) as unknown });
    rest = rest.slice(headEnd + 4 + length);
  }
  return parsed;
}
