import { Writable } from 'node:stream';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { claimRefusedSqlState } from '../../../../src/idempotency/index.ts';
import { installProblemHandler } from './problem-handler.ts';

/** A fastify app on a logger whose lines land in `lines`, with routes that fail as asked. */
function appLoggingTo(lines: { level: number; msg: string }[]) {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
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
  return app;
}

describe('the problem handler', () => {
  it('logs an unexpected failure as an error, and a refused Idempotency-Key claim not', async () => {
    const lines: { level: number; msg: string }[] = [];
    const app = appLoggingTo(lines);
    expect((await app.inject({ method: 'POST', url: '/refused' })).statusCode).toBe(500);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(lines.map((l) => l.msg)).toContain('idempotency key taken: answered from the key');
    expect((await app.inject({ method: 'POST', url: '/broken' })).statusCode).toBe(500);
    expect(lines.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual(['request failed']);
    await app.close();
  });
});
