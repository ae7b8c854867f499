import http from 'node:http';
import net from 'node:net';
import type { ConnectionError } from 'fastify';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokenCircuitError, RateLimitedError, circuitBreaker } from '../../../../src/resilience/index.ts';
import { ManualClock } from '../../../../src/time/index.ts';
import { RawConnection, rawGet, type RawResponse } from '../../test/raw-http.ts';
import { clientErrorHandler } from './client-error-handler.ts';
import { createHttpApp, type HttpAppOptions } from './http-app.ts';
import { HttpServer } from './http-server.ts';

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** The shop's app with one route, `/v1/things/:id`, that answers the id. */
function appWithARoute(options: HttpAppOptions = {}) {
  const app = createHttpApp(pino({ level: 'silent' }), options);
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

    const connection = new RawConnection(server.address);
    stops.push(async () => connection.destroy());
    connection.write(rawGet('/slow'));
    await isStarted;
    const stopped = server.stop({ drainMs: 5000 });
    await isClosing;
    // The second request comes on the same connection, still busy with the first.
    connection.write(rawGet('/v1/things/1'));
    await isSecondArrived;
    release();
    await stopped;
    await connection.closed;

    const [first, second] = connection.responses();
    expect(first?.status).toBe(200);
    expect(JSON.parse(first?.body ?? '')).toEqual({ done: true });
    expect(second?.status).toBe(503);
    expect(second?.headers).toMatchObject({ 'retry-after': '1', connection: 'close' });
    expect(second?.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(second?.body ?? '')).toEqual({
      type: 'urn:keel:error:keel_shutting_down',
      title: 'Shutting down',
      status: 503,
      detail: 'The server is shutting down; send the request again.',
      code: 'KEEL_SHUTTING_DOWN',
      instance: '/v1/things/1',
    });
  });
});

describe('a 429 or 503 problem whose error asks for a delay', () => {
  it('says it in Retry-After: an open breaker’s, though the problem withholds the code’s details', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({
      clock,
      initialState: {
        status: 'open',
        since: clock.now(),
        until: clock.now() + 2_500,
        reason: 'consecutive-failures',
      },
    });
    const app = appWithARoute();
    app.get('/v1/payments', () => breaker.execute(async () => 'paid'));
    const response = await app.inject({ url: '/v1/payments' });
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('3');
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json()).toEqual({
      type: 'urn:keel:error:keel_broken_circuit',
      title: 'Circuit open',
      status: 503,
      detail: 'A service this one depends on is failing; try again later.',
      code: 'KEEL_BROKEN_CIRCUIT',
      instance: '/v1/payments',
    });
  });

  it('in whole seconds, rounded up and at least 1; and says none where the error asks no delay', async () => {
    const app = appWithARoute();
    const failures: Record<string, Error> = {
      '/v1/limited-briefly': new RateLimitedError(1),
      '/v1/limited': new RateLimitedError(1_001),
      '/v1/half-open': new BrokenCircuitError({ status: 'half-open', since: 0 }, undefined),
    };
    for (const [url, error] of Object.entries(failures)) {
      app.get(url, async () => {
        throw error;
      });
    }
    const answer = async (url: string) => {
      const response = await app.inject({ url });
      return [response.statusCode, response.headers['retry-after']];
    };
    expect(await answer('/v1/limited-briefly')).toEqual([429, '1']);
    expect(await answer('/v1/limited')).toEqual([429, '2']);
    expect(await answer('/v1/half-open')).toEqual([503, undefined]);
  });
});

/** `appWithARoute` listening on a port of its own; its address. */
async function listeningApp(options: HttpAppOptions = {}): Promise<string> {
  return appWithARoute(options).listen({ port: 0, host: '127.0.0.1' });
}

/** Sends `text` on a new connection; the one answer, once the server has closed the connection. */
async function onlyAnswerTo(address: string, text: string): Promise<RawResponse> {
  const connection = new RawConnection(address);
  stops.push(async () => connection.destroy());
  connection.write(text);
  await connection.closed;
  const [answer, ...more] = connection.responses();
  expect(more).toEqual([]);
  return answer!;
}

/** The problem of an answer node's HTTP server gave before routing, checked for its framing. */
function problemOf(answer: RawResponse): unknown {
  expect(answer.headers).toMatchObject({
    'content-type': 'application/problem+json; charset=utf-8',
    connection: 'close',
  });
  return JSON.parse(answer.body);
}

describe('what node’s HTTP server refuses before the app routes it', () => {
  it('answers bytes that are not an HTTP request with a 400 problem, and closes the connection', async () => {
    const answer = await onlyAnswerTo(await listeningApp(), 'NOT A REQUEST\r\n\r\n');
    expect(answer.status).toBe(400);
    const message = 'it is not an HTTP/1.1 request the server can read: Invalid method encountered';
    expect(problemOf(answer)).toEqual({
      type: 'urn:keel:error:keel_validation_failed',
      title: 'Validation failed',
      status: 400,
      detail: `request is invalid: ${message}`,
      code: 'KEEL_VALIDATION_FAILED',
      errors: [{ path: '', message }],
    });
  });

  it('answers a malformed header with a 400 problem that names what is wrong', async () => {
    const answer = await onlyAnswerTo(
      await listeningApp(),
      'GET /v1/things/1 HTTP/1.1\r\nHost: shop\r\nBad Header: x\r\n\r\n',
    );
    expect(answer.status).toBe(400);
    expect(problemOf(answer)).toMatchObject({
      code: 'KEEL_VALIDATION_FAILED',
      detail: 'request is invalid: it is not an HTTP/1.1 request the server can read: Invalid header token',
    });
  });

  it('answers headers past the maximum header size with a 431 problem that names the limit', async () => {
    const big = `GET /v1/things/1 HTTP/1.1\r\nHost: shop\r\nX-Big: ${'x'.repeat(http.maxHeaderSize)}\r\n\r\n`;
    const answer = await onlyAnswerTo(await listeningApp(), big);
    expect(answer.status).toBe(431);
    expect(problemOf(answer)).toEqual({
      type: 'urn:keel:error:keel_headers_too_large',
      title: 'Request headers too large',
      status: 431,
      detail: `request line and headers are larger than the limit of ${http.maxHeaderSize} bytes`,
      code: 'KEEL_HEADERS_TOO_LARGE',
    });
  });

  it('answers a chunk whose extensions are past node’s limit with a 413 problem', async () => {
    const app = appWithARoute();
    app.post('/v1/things', async (request) => request.body);
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    const extensions = 'e'.repeat(20_000);
    const chunked = `POST /v1/things HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2;${extensions}\r\n{}\r\n0\r\n\r\n`;
    const answer = await onlyAnswerTo(address, chunked);
    expect(answer.status).toBe(413);
    expect(problemOf(answer)).toMatchObject({
      code: 'KEEL_PAYLOAD_TOO_LARGE',
      detail: 'request body has chunk extensions larger than the server reads',
    });
  });

  // Real time: node checks its connections on a timer of its own.
  it('answers a request that does not arrive in full within requestTimeout with a 408 problem', async () => {
    const address = await listeningApp({ requestTimeoutMs: 200, timeoutCheckIntervalMs: 50 });
    const answer = await onlyAnswerTo(address, 'GET /v1/things/1 HTTP/1.1\r\nHost: shop\r\n');
    expect(answer.status).toBe(408);
    expect(problemOf(answer)).toEqual({
      type: 'urn:keel:error:keel_request_timeout',
      title: 'Request timeout',
      status: 408,
      detail: 'the request did not arrive in full in time; send it again on a new connection',
      code: 'KEEL_REQUEST_TIMEOUT',
    });
  });

  it('answers a request that arrives in time on that app as ever', async () => {
    const address = await listeningApp({ requestTimeoutMs: 200, timeoutCheckIntervalMs: 50 });
    const connection = new RawConnection(address);
    stops.push(async () => connection.destroy());
    connection.write(rawGet('/v1/things/7'));
    while (connection.responses().length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(connection.responses()).toMatchObject([{ status: 200, body: '{"id":"7"}' }]);
  });

  it('checks the request timeout every tenth of it, within 1–30 s, unless told', () => {
    const logger = pino({ level: 'silent' });
    const interval = (options: Parameters<typeof createHttpApp>[1]) =>
      (createHttpApp(logger, options).server as { connectionsCheckingInterval?: number })
        .connectionsCheckingInterval;
    expect(interval({ requestTimeoutMs: 30_000 })).toBe(3000);
    expect(interval({ requestTimeoutMs: 2000 })).toBe(1000);
    expect(interval({ requestTimeoutMs: 600_000 })).toBe(30_000);
    expect(interval({})).toBe(30_000);
    expect(interval({ requestTimeoutMs: 30_000, timeoutCheckIntervalMs: 50 })).toBe(50);
  });

  it('refuses a requestTimeoutMs or timeoutCheckIntervalMs that is no whole number of ms, by name', () => {
    const logger = pino({ level: 'silent' });
    expect(() => createHttpApp(logger, { requestTimeoutMs: -1 })).toThrow(/requestTimeoutMs/);
    expect(() => createHttpApp(logger, { timeoutCheckIntervalMs: 0.5 })).toThrow(/timeoutCheckIntervalMs/);
  });
});

describe('clientErrorHandler', () => {
  /** A socket of node's HTTP server as the handler sees it, recording what is done to it. */
  function socketThat(state: { writable?: boolean; destroyed?: boolean; responding?: boolean }) {
    const done: string[] = [];
    const socket = Object.assign(new net.Socket(), {
      _httpMessage: state.responding === undefined ? null : { headersSent: state.responding },
    });
    Object.defineProperty(socket, 'writable', { value: state.writable ?? true });
    Object.defineProperty(socket, 'destroyed', { value: state.destroyed ?? false });
    socket.write = () => {
      done.push('write');
      return true;
    };
    socket.destroy = () => {
      done.push('destroy');
      return socket;
    };
    return { socket, done };
  }
  const parseError = (code: string) => Object.assign(new Error('Parse Error'), { code }) as ConnectionError;
  const handle = clientErrorHandler(pino({ level: 'silent' }));

  it('answers and destroys a socket that takes bytes and has no response under way', () => {
    for (const responding of [undefined, false]) {
      const { socket, done } = socketThat({ responding });
      handle(parseError('HPE_INVALID_METHOD'), socket);
      expect(done).toEqual(['write', 'destroy']);
    }
  });

  it('only destroys a socket that no longer takes bytes, or whose response has begun', () => {
    for (const state of [{ writable: false }, { responding: true }]) {
      const { socket, done } = socketThat(state);
      handle(parseError('ERR_HTTP_REQUEST_TIMEOUT'), socket);
      expect(done, JSON.stringify(state)).toEqual(['destroy']);
    }
  });

  it('does nothing to a connection the client reset, or one already destroyed', () => {
    for (const [code, state] of [
      ['ECONNRESET', {}],
      ['HPE_INVALID_METHOD', { destroyed: true }],
    ] as const) {
      const { socket, done } = socketThat(state);
      handle(parseError(code), socket);
      expect(done, code).toEqual([]);
    }
  });
});
