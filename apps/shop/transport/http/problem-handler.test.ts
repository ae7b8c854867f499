import net from 'node:net';
import { Writable } from 'node:stream';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { afterAll, beforeAll } from 'vitest';
import { claimRefusedSqlState } from '../../../../src/idempotency/index.ts';
import { systemClock } from '../../../../src/time/index.ts';
import type { Shop } from '../../app.ts';
import { DbFault, databaseUnreachable } from '../../test/db-fault.ts';
import { createShopStore, openTestShop, type ShopStore } from '../../test/test-shop.ts';
import { until } from '../../../../test/until.ts';
import { installProblemHandler } from './problem-handler.ts';

interface LogLine {
  level: number;
  msg: string;
  err?: { message: string; details?: unknown };
}

/** A fastify app on a logger whose lines land in `lines`, with routes that fail as asked. */
function appLoggingTo(lines: LogLine[]) {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as LogLine);
      done();
    },
  });
  const logger: FastifyBaseLogger = pino({ level: 'debug' }, stream);
  const app = Fastify({ loggerInstance: logger });
  installProblemHandler(app);
  app.post('/refused', async () => {
    // As the database driver reports a refused claim: the SQLSTATE on the error's cause.
    throw new Error('transaction failed', {
      cause: Object.assign(new Error('idempotency key k is taken'), { code: claimRefusedSqlState }),
    });
  });
  app.post('/broken', async () => {
    throw new Error('something broke');
  });
  app.post('/echo', async (request) => request.body);
  app.get('/db-down', async () => {
    throw databaseUnreachable();
  });
  app.get('/bad-json-in-the-database', async () => JSON.parse('{"note": ') as unknown);
  return app;
}

const errorLines = (lines: LogLine[]) => lines.filter((l) => l.level >= 50);

describe('the problem handler', () => {
  it('logs an unexpected failure as an error, and a refused Idempotency-Key claim not', async () => {
    const lines: LogLine[] = [];
    const app = appLoggingTo(lines);
    expect((await app.inject({ method: 'POST', url: '/refused' })).statusCode).toBe(500);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(lines.map((l) => l.msg)).toContain('idempotency key taken: answered from the key');
    expect((await app.inject({ method: 'POST', url: '/broken' })).statusCode).toBe(500);
    expect(lines.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual(['request failed']);
    await app.close();
  });

  it('answers each way fastify refuses a body with the 4xx problem it is, and logs none as a failure', async () => {
    const lines: LogLine[] = [];
    const app = appLoggingTo(lines);
    const json = { 'content-type': 'application/json' };
    const cases = [
      {
        name: 'a body shorter than its Content-Length',
        headers: { ...json, 'content-length': '100' },
        payload: '{"a":1}',
        status: 400,
        code: 'KEEL_MALFORMED_BODY',
      },
      { name: 'an empty JSON body', headers: json, payload: '', status: 400, code: 'KEEL_MALFORMED_BODY' },
      { name: 'not JSON', headers: json, payload: '{"a":', status: 400, code: 'KEEL_MALFORMED_BODY' },
      {
        name: 'an unparsable Content-Type',
        headers: { 'content-type': '/;' },
        payload: '{}',
        status: 415,
        code: 'KEEL_UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: 'a media type with no parser',
        headers: { 'content-type': 'application/xml' },
        payload: '<a/>',
        status: 415,
        code: 'KEEL_UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: 'a body past the limit',
        headers: json,
        payload: JSON.stringify({ a: 'x'.repeat(1024 * 1024) }),
        status: 413,
        code: 'KEEL_PAYLOAD_TOO_LARGE',
      },
    ];
    for (const { name, headers, payload, status, code } of cases) {
      const response = await app.inject({ method: 'POST', url: '/echo', headers, payload });
      expect(response.statusCode, name).toBe(status);
      expect(response.headers['content-type'], name).toMatch(/^application\/problem\+json/);
      expect(response.json(), name).toMatchObject({ status, code, instance: '/echo' });
    }
    expect(errorLines(lines)).toEqual([]);
    await app.close();
  });

  it('logs a client that went away before its body arrived as a warning, not as a failure of the server', async () => {
    const lines: LogLine[] = [];
    const app = appLoggingTo(lines);
    const address = new URL(await app.listen({ port: 0, host: '127.0.0.1' }));
    const socket = net.connect(Number(address.port), address.hostname);
    socket.on('error', () => undefined);
    // Half the body its Content-Length announces, then the client's end of the connection closes.
    socket.end(
      'POST /echo HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":1}',
    );
    await until(() => lines.some((l) => l.msg === 'request failed'), 5000, 'the aborted request logged');
    expect(lines.filter((l) => l.msg === 'request failed').map((l) => l.level)).toEqual([40]);
    expect(errorLines(lines)).toEqual([]);
    socket.destroy();
    await app.close();
  });

  it('tells the client the database is unavailable, not where; the log keeps the address', async () => {
    const lines: LogLine[] = [];
    const app = appLoggingTo(lines);
    const response = await app.inject({ url: '/db-down' });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({
      type: 'urn:keel:error:keel_db_unavailable',
      title: 'Database unavailable',
      status: 503,
      detail: 'The database is unavailable; try again later.',
      code: 'KEEL_DB_UNAVAILABLE',
      instance: '/db-down',
    });
    expect(response.body).not.toMatch(/127\.0\.0\.1|5432/);
    const [logged] = errorLines(lines);
    expect(logged?.err?.message).toContain('PostgreSQL at 127.0.0.1:5432 is unreachable');
    expect(logged?.err?.details).toEqual({ host: '127.0.0.1', port: 5432 });
    await app.close();
  });

  it('answers a SyntaxError of the server’s own as KEEL_INTERNAL, not as the client’s malformed body', async () => {
    const lines: LogLine[] = [];
    const app = appLoggingTo(lines);
    const response = await app.inject({ url: '/bad-json-in-the-database' });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toMatchObject({
      code: 'KEEL_INTERNAL',
      detail: 'The server failed to handle the request.',
    });
    expect(errorLines(lines).map((l) => l.msg)).toEqual(['request failed']);
    await app.close();
  });
});

describe('the shop, through its problem handler', () => {
  const fault = new DbFault();
  let store: ShopStore;
  let shop: Shop;
  beforeAll(async () => {
    store = await createShopStore();
    shop = await openTestShop(store, ['api'], systemClock, { db: (db) => fault.wrap(db) });
    await shop.start();
  });
  afterAll(async () => {
    await shop.stop({ drainMs: 1000 });
    await store.dispose();
  });

  it('answers an order whose body is shorter than its Content-Length with a 400 problem', async () => {
    const response = await shop.http.inject({
      method: 'POST',
      url: '/v1/orders',
      headers: { 'content-type': 'application/json', 'content-length': '200', 'idempotency-key': 'k-short' },
      payload: JSON.stringify({ customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] }),
    });
    expect(response.statusCode).toBe(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json()).toMatchObject({
      code: 'KEEL_MALFORMED_BODY',
      detail: 'request body is not as long as its Content-Length says',
    });
  });

  it('answers 503 while the database is unreachable without naming its address, on /v1 and /readyz', async () => {
    await fault.during(databaseUnreachable(), async () => {
      for (const url of ['/v1/orders/01a2205b-b3e8-77ba-ba9b-f9c3d17002af', '/readyz']) {
        const response = await shop.http.inject({ url });
        expect(response.statusCode, url).toBe(503);
        expect(response.json(), url).toEqual({
          type: 'urn:keel:error:keel_db_unavailable',
          title: 'Database unavailable',
          status: 503,
          detail: 'The database is unavailable; try again later.',
          code: 'KEEL_DB_UNAVAILABLE',
          instance: url,
        });
      }
    });
  });
});
