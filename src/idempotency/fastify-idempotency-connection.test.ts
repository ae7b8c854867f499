// Idempotency keys over a real socket: light-my-request's inject() has no connection to lose, so
// only a listening server shows what a client that goes away does to its key, and whether a
// request waiting for a key (`inFlight: { waitMs }`) tells a closed request body (every request,
// once its body is read) from a client that went away.
import Fastify, { type FastifyInstance } from 'fastify';
import http from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { installIdempotency, type IdempotencyOptions } from './fastify-idempotency.ts';
import type { BeginRequest, IdempotencyStore } from './idempotency-store.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A listening app whose POST /charges stalls its first run until `release()`. */
async function listeningApp(inFlight: IdempotencyOptions['inFlight'] = { waitMs: 1_000, pollMs: 100 }) {
  const clock = new ManualClock();
  const memory = new MemoryIdempotencyStore({ clock });
  const begins: string[] = [];
  const store: IdempotencyStore = {
    begin: async (request: BeginRequest) => {
      const outcome = await memory.begin(request);
      begins.push(outcome.kind);
      return outcome;
    },
    complete: (...args) => memory.complete(...args),
    release: (...args) => memory.release(...args),
  };
  const fastify: FastifyInstance = Fastify();
  installIdempotency(fastify, { store, clock, inFlight });
  let runs = 0;
  let release!: () => void;
  const stalled = new Promise<void>((resolve) => (release = resolve));
  let entered!: () => void;
  const inside = new Promise<void>((resolve) => (entered = resolve));
  fastify.post('/charges', async (_request, reply) => {
    runs++;
    entered();
    if (runs === 1) await stalled;
    return reply.status(201).send({ id: runs });
  });
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(async () => {
    release();
    await fastify.close();
  });
  const { port } = fastify.server.address() as { port: number };
  const post = () =>
    fetch(`http://127.0.0.1:${port}/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
      body: '{"amount":5}',
    });
  /** Sends the request and goes away without reading the answer. */
  const postAndLeave = () => {
    const leaving = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/charges',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
    });
    leaving.on('error', () => undefined);
    leaving.end('{"amount":5}');
    return () => leaving.destroy();
  };
  return { clock, begins, release, inside, post, postAndLeave, runs: () => runs };
}

describe('inFlight: wait, over a real connection', () => {
  it('waits for the running request and replays its response (not a 409 once the body is read)', async () => {
    const { clock, begins, release, inside, post, runs } = await listeningApp();
    const first = post();
    await inside;
    const second = post();
    // The second request found the key in flight and sleeps on the clock until its next look.
    await vi.waitFor(() => expect(begins).toEqual(['started', 'in-flight']));
    release();
    expect((await first).status).toBe(201);
    await clock.advance(100);
    const replayed = await second;
    expect(replayed.status).toBe(201);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    expect(await replayed.json()).toEqual({ id: 1 });
    expect(runs()).toBe(1);
  });

  it('stops waiting when the client goes away: no more looks at the key', async () => {
    const { clock, begins, release, inside, post, postAndLeave } = await listeningApp();
    const first = post();
    await inside;
    const leave = postAndLeave();
    await vi.waitFor(() => expect(clock.pendingTimers).toBe(1));
    leave();
    await vi.waitFor(() => expect(clock.pendingTimers).toBe(0));
    await clock.advance(1_000);
    expect(begins).toEqual(['started', 'in-flight']);
    release();
    expect((await first).status).toBe(201);
  });
});

describe('a client that goes away mid-request', () => {
  it('does not let the key go while the handler runs: a retry gets 409, then the stored response', async () => {
    const { release, inside, post, postAndLeave, runs } = await listeningApp('reject');
    const leave = postAndLeave();
    await inside;
    leave();
    const retry = await post();
    expect(retry.status).toBe(409);
    release();
    await vi.waitFor(async () => {
      const replayed = await post();
      expect(replayed.headers.get('idempotent-replayed')).toBe('true');
      expect(await replayed.json()).toEqual({ id: 1 });
    });
    expect(runs()).toBe(1);
  });
});

describe('a route that reads its body as a stream (an upload)', () => {
  it('runs and replays: the fingerprint leaves the unread stream out instead of walking it', async () => {
    const fastify = Fastify();
    installIdempotency(fastify, { store: new MemoryIdempotencyStore() });
    fastify.addContentTypeParser('application/octet-stream', (_request, payload, done) =>
      done(null, payload),
    );
    let runs = 0;
    fastify.post('/uploads', async (request, reply) => {
      let bytes = 0;
      for await (const chunk of request.body as AsyncIterable<Buffer>) bytes += chunk.length;
      return reply.status(201).send({ upload: ++runs, bytes });
    });
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => fastify.close());
    const { port } = fastify.server.address() as { port: number };
    const upload = () =>
      fetch(`http://127.0.0.1:${port}/uploads`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'idempotency-key': 'k' },
        body: Buffer.alloc(10_000, 7),
      });
    const first = await upload();
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ upload: 1, bytes: 10_000 });
    const retry = await upload();
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual({ upload: 1, bytes: 10_000 });
    expect(runs).toBe(1);
  });
});
