import { describe, expect, it } from 'vitest';
import { KeelError } from '../errors/index.ts';
import { ManualClock } from '../time/index.ts';
import { HealthRecord } from './service-health.ts';

describe('HealthRecord', () => {
  it('counts failures in a row, resets on a success, and calls silence past its bound failing too', async () => {
    const clock = new ManualClock();
    const record = new HealthRecord(clock, { database: { silentMs: 5000 } });
    record.succeeded('database');
    const start = clock.now();
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: start });
    expect(record.health('stopping')).toEqual({ status: 'not-running', state: 'stopping' });

    await clock.advance(1000);
    const error = new Error('down');
    record.failed('database', error, 'poll');
    await clock.advance(1000);
    record.failed('database', error, 'heartbeat');
    expect(record.health('running')).toEqual({
      status: 'failing',
      dependency: 'database',
      during: 'heartbeat',
      since: start + 1000,
      failures: 2,
      lastError: error,
      lastContactAt: start,
    });
    record.succeeded('database');
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: start + 2000 });

    // A call that hangs fails nothing: past the bound without an answer, it is failing too.
    await clock.advance(5000);
    expect(record.health('running')).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(record.health('running')).toEqual({
      status: 'failing',
      dependency: 'database',
      during: undefined,
      since: start + 7000,
      failures: 0,
      lastError: undefined,
      lastContactAt: start + 2000,
    });
  });

  it('counts silence from the start until the first answer, and not at all without a bound', async () => {
    const clock = new ManualClock();
    const record = new HealthRecord(clock, { database: { silentMs: 1000 }, broker: {} });
    await clock.advance(60_000);
    record.started();
    const start = clock.now();
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
    await clock.advance(1001);
    // The broker, called only when there is work, is never silent; the database is.
    expect(record.health('running')).toMatchObject({
      status: 'failing',
      dependency: 'database',
      since: start + 1000,
    });
    record.succeeded('database');
    await clock.advance(3_600_000 - 2000);
    record.succeeded('database');
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it("keeps each dependency's failures apart and names the one failing longest", async () => {
    const clock = new ManualClock();
    const record = new HealthRecord(clock, { database: {}, broker: {} });
    const start = clock.now();
    record.failed('broker', new KeelError('KEEL_BROKER_UNAVAILABLE', 'refused'), 'publish');
    await clock.advance(10);
    record.failed('database', new KeelError('KEEL_DB_UNAVAILABLE', 'lost'), 'claim');
    // The database answering again says nothing about the broker.
    record.succeeded('database');
    expect(record.health('running')).toMatchObject({ status: 'failing', dependency: 'broker', since: start });
    record.failed('database', new KeelError('KEEL_DB_UNAVAILABLE', 'lost'), 'claim');
    expect(record.health('running')).toMatchObject({ dependency: 'broker', during: 'publish' });
    record.succeeded('broker');
    expect(record.health('running')).toMatchObject({ dependency: 'database', during: 'claim', failures: 1 });
    record.started();
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
  });

  it('tracks a call: its outcome recorded, its result or error passed through', async () => {
    const clock = new ManualClock();
    const record = new HealthRecord(clock, { database: {}, broker: {} });
    const start = clock.now();
    await expect(record.track('database', 'claim', () => Promise.resolve(7))).resolves.toBe(7);
    await clock.advance(10);
    const error = new KeelError('KEEL_BROKER_UNAVAILABLE', 'down');
    await expect(record.track('broker', 'publish', () => Promise.reject(error))).rejects.toBe(error);
    expect(record.health('running')).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      since: start + 10,
      failures: 1,
      lastError: error,
      // The broker's own last answer: it has given none.
      lastContactAt: undefined,
    });
    await record.track('broker', 'publish', () => Promise.resolve());
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: start + 10 });
  });

  it('calls a call open past hangMs failing from then, doing what it does, until it ends', async () => {
    const clock = new ManualClock();
    const record = new HealthRecord(clock, { broker: { hangMs: 1000 }, database: {} });
    const start = clock.now();
    let answer!: () => void;
    const publish = record.track(
      'broker',
      'publish',
      () => new Promise<void>((resolve) => (answer = resolve)),
    );
    // A call open on a dependency without hangMs is not watched.
    const endQuery = record.calling('database', 'claim');
    await clock.advance(1000);
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
    await clock.advance(500);
    expect(record.health('running')).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'publish',
      since: start + 1000,
      failures: 0,
      lastError: undefined,
      lastContactAt: undefined,
    });
    answer();
    await publish;
    endQuery();
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: start + 1500 });

    // A failure before the hang names the dependency's failing since it; a fresh start forgets both.
    const error = new Error('refused');
    record.failed('broker', error, 'publish');
    const close = record.calling('broker', 'confirm');
    await clock.advance(2000);
    expect(record.health('running')).toMatchObject({ since: start + 1500, during: 'publish', failures: 1 });
    record.started();
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
    await clock.advance(2000);
    // The call made before the start no longer counts, and closing it later changes nothing.
    expect(record.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
    close();
  });

  it('names the field of a bad bound or an unknown dependency', () => {
    const clock = new ManualClock();
    expect(() => new HealthRecord(clock, { database: { silentMs: 0 } })).toThrow(
      expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT', field: 'database.silentMs' }),
    );
    expect(() => new HealthRecord(clock, { database: { silentMs: Number.NaN } })).toThrow(
      /database\.silentMs/,
    );
    expect(() => new HealthRecord(clock, { broker: { hangMs: -1 } })).toThrow(
      expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT', field: 'broker.hangMs' }),
    );
    const record = new HealthRecord<string>(clock, { database: {} });
    expect(() => record.succeeded('broker')).toThrow(expect.objectContaining({ field: 'dependency' }));
  });
});
