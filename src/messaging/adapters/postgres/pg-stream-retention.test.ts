import { afterEach, describe, expect, it } from 'vitest';
import type { Db } from '../../../db/index.ts';
import { advanceUntil, type TestDb } from '../../../testing/index.ts';
import type { ManualClock } from '../../../time/index.ts';
import type { Envelope } from '../../envelope.ts';
import type { PgStream } from './pg-stream.ts';
import { PgStreamRetention, type PgStreamRetentionOptions } from './pg-stream-retention.ts';
import { countedEvents, openTestStream } from './pg-stream-test-support.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setup(): Promise<{ db: TestDb; stream: PgStream; clock: ManualClock }> {
  return openTestStream(cleanups);
}

function retention(db: Db, options: PgStreamRetentionOptions): PgStreamRetention {
  const service = new PgStreamRetention(db, options);
  cleanups.push(() => service.stop({ drainMs: 1000 }));
  return service;
}

function events(count: number): Envelope[] {
  return countedEvents(count);
}

type Trimmed = { stream: string; deleted: number };

/** Collects `trimmed` events; `until(n)` settles once n have come. */
function trimmedEvents(service: PgStreamRetention): { all: Trimmed[]; until: (n: number) => Promise<void> } {
  const all: Trimmed[] = [];
  service.events.on('trimmed', (event) => void all.push(event));
  return {
    all,
    until: async (n) => {
      while (all.length < n) await service.events.once('trimmed');
    },
  };
}

describe('PgStreamRetention', () => {
  it('trims each configured stream at start and then every intervalMs on its clock, and leaves others alone', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('orders', events(5));
    await stream.append('audit', events(5));
    await stream.append('other', events(5));
    const service = retention(db, {
      streams: [
        { stream: 'orders', keepLast: 2 },
        { stream: 'audit', before: 3 },
      ],
      intervalMs: 60_000,
      clock,
    });
    const trimmed = trimmedEvents(service);
    const startedAt = clock.now();
    await service.start();
    await advanceUntil(clock, trimmed.until(2), { stepMs: 1 });
    expect(trimmed.all).toEqual([
      { stream: 'orders', deleted: 3 },
      { stream: 'audit', deleted: 2 },
    ]);
    expect(clock.now() - startedAt).toBeLessThan(1000);
    await stream.append('orders', events(3));
    // Nothing before the interval is up ...
    await clock.advance(58_000);
    expect(await stream.bounds('orders')).toEqual({ first: 4, last: 8 });
    // ... then the next round.
    await advanceUntil(clock, trimmed.until(3));
    expect(trimmed.all[2]).toEqual({ stream: 'orders', deleted: 3 });
    expect(await stream.bounds('orders')).toEqual({ first: 7, last: 8 });
    expect(await stream.bounds('audit')).toEqual({ first: 3, last: 5 });
    expect(await stream.bounds('other')).toEqual({ first: 1, last: 5 });
    await service.stop();
    expect(service.state).toBe('stopped');
    expect(clock.pendingTimers).toBe(0);
  });

  it('a failing trim is an error event naming its stream; the other streams still trim, and it is tried again next interval', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('orders', events(4));
    await stream.append('audit', events(4));
    // The first transaction fails: the first rule's first batch.
    let failures = 1;
    const flaky: Db = {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => db.query(sql, params),
      transaction: (fn, options) =>
        failures-- > 0 ? Promise.reject(new Error('connection reset')) : db.transaction(fn, options),
      listen: (channel, onNotify) => db.listen(channel, onNotify),
      close: () => db.close(),
    };
    const service = retention(flaky, {
      streams: [
        { stream: 'orders', keepLast: 0 },
        { stream: 'audit', keepLast: 0 },
      ],
      intervalMs: 1000,
      clock,
    });
    const errors: string[] = [];
    service.events.on('error', ({ during }) => void errors.push(during));
    const trimmed = trimmedEvents(service);
    await service.start();
    await advanceUntil(clock, trimmed.until(1), { stepMs: 1 });
    expect(errors).toEqual(['trim orders']);
    expect(trimmed.all).toEqual([{ stream: 'audit', deleted: 4 }]);
    const failedAt = clock.now();
    await advanceUntil(clock, trimmed.until(2));
    expect(clock.now() - failedAt).toBeGreaterThanOrEqual(1000 - 1);
    expect(trimmed.all[1]).toEqual({ stream: 'orders', deleted: 4 });
    expect(errors).toEqual(['trim orders']);
  });

  it('two services on one stream (two processes) trim each entry once', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('orders', events(40));
    const options = { streams: [{ stream: 'orders', keepLast: 0 }], batchSize: 3, intervalMs: 1000, clock };
    const first = retention(db, options);
    const second = retention(db, options);
    const firstTrimmed = trimmedEvents(first);
    const secondTrimmed = trimmedEvents(second);
    const deleted = (): number =>
      [...firstTrimmed.all, ...secondTrimmed.all].reduce((sum, event) => sum + event.deleted, 0);
    await Promise.all([first.start(), second.start()]);
    await advanceUntil(
      clock,
      (async () => {
        while (deleted() < 40) await new Promise((resolve) => setImmediate(resolve));
      })(),
    );
    // An entry deleted by both would be counted twice.
    expect(deleted()).toBe(40);
    expect(await stream.bounds('orders')).toEqual({ first: 41, last: 40 });
  });

  it('trimOnce() works without start(); stop() during a trim lets the batch in flight commit and starts no other', async () => {
    const { db, stream, clock } = await setup();
    await stream.append('orders', events(10));
    const once = retention(db, { streams: [{ stream: 'orders', keepLast: 4 }], clock });
    expect(await once.trimOnce()).toBe(6);
    expect(await once.trimOnce()).toBe(0);
    expect(await stream.bounds('orders')).toEqual({ first: 7, last: 10 });

    await stream.append('audit', events(10));
    // stop() is called as the second batch's transaction begins.
    let stopped: Promise<void> | undefined;
    let transactions = 0;
    const stopsOnSecond: Db = {
      dialect: db.dialect,
      schema: db.schema,
      query: (sql, params) => db.query(sql, params),
      transaction: (fn, options) => {
        if (++transactions === 2) stopped = service.stop();
        return db.transaction(fn, options);
      },
      listen: (channel, onNotify) => db.listen(channel, onNotify),
      close: () => db.close(),
    };
    const service = retention(stopsOnSecond, {
      streams: [{ stream: 'audit', keepLast: 0 }],
      batchSize: 2,
      clock,
    });
    const trimmed = service.events.once('trimmed');
    await service.start();
    expect(await trimmed).toEqual({ stream: 'audit', deleted: 4 });
    await stopped;
    expect(service.state).toBe('stopped');
    expect(transactions).toBe(2);
    expect(await stream.bounds('audit')).toEqual({ first: 5, last: 10 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects bad options by field, at construction; stop() is idempotent', async () => {
    const { db, clock } = await setup();
    const build = (options: object) =>
      new PgStreamRetention(db, { streams: [{ stream: 'orders', keepLast: 1 }], clock, ...options });
    expect(() => build({ streams: undefined })).toThrow(expect.objectContaining({ field: 'streams' }));
    expect(() => build({ streams: [{ stream: 'orders' }] })).toThrow(
      expect.objectContaining({ field: 'streams.0.before' }),
    );
    expect(() => build({ streams: [{ stream: 'bad name!', keepLast: 1 }] })).toThrow(
      expect.objectContaining({ field: 'streams.0.stream' }),
    );
    expect(() => build({ streams: [{ stream: 'a', keepLast: -1 }] })).toThrow(
      expect.objectContaining({ field: 'streams.0.keepLast' }),
    );
    expect(() =>
      build({
        streams: [
          { stream: 'a', keepLast: 1 },
          { stream: 'a', before: 1 },
        ],
      }),
    ).toThrow(expect.objectContaining({ field: 'streams.1.stream' }));
    expect(() => build({ intervalMs: 0 })).toThrow(expect.objectContaining({ field: 'intervalMs' }));
    expect(() => build({ batchSize: 1.5 })).toThrow(expect.objectContaining({ field: 'batchSize' }));
    const service = build({});
    await service.start();
    const stopping = service.stop();
    expect(service.stop()).toBe(stopping);
    await stopping;
    expect(service.state).toBe('stopped');
    expect(clock.pendingTimers).toBe(0);
  });
});
