// stop() while a ProjectionRunner's one-shot calls are in flight, on a runner never started (a
// command line's) and on a started one: catchUp() ends after the batch in hand (committed, or
// rolled back past the drain deadline) and rejects with KEEL_SERVICE_STATE, and stop() resolves
// after it; a rebuild() in flight is waited for. On the suite's database (PGlite, or PostgreSQL
// with KEEL_DB=pg), on a manual clock.
import { afterEach, describe, expect, it } from 'vitest';
import type { Db, Tx } from '../../../db/index.ts';
import { advanceUntil } from '../../../testing/index.ts';
import type { ManualClock } from '../../../time/index.ts';
import { ProjectionRunner, type Projection, type ProjectionRunnerOptions } from './pg-stream-projection.ts';
import type { PgStream, StreamEntry } from './pg-stream.ts';
import { countedEvents, openTestStream } from './pg-stream-test-support.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A gate that `hold()` closes and `release()` opens; `reached` resolves when work arrives at it. */
class Gate {
  reached: Promise<void> = Promise.resolve();
  #arrive: (() => void) | undefined;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;

  constructor() {
    // A test that failed with the gate closed must not leave a transaction open under the cleanup.
    cleanups.push(async () => this.release());
  }

  hold(): void {
    this.reached = new Promise((resolve) => (this.#arrive = resolve));
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  release(): void {
    this.#gate = undefined;
    this.#open?.();
  }

  async pass(): Promise<void> {
    if (this.#gate === undefined) return;
    this.#arrive?.();
    await this.#gate;
  }
}

/** Inserts each entry into `model`, then waits at `gate` (after its writes: a rollback takes them back). */
function gatedProjection(gate: Gate): Projection {
  return {
    async apply(entries: readonly StreamEntry[], tx: Tx): Promise<void> {
      for (const entry of entries)
        await tx.query('INSERT INTO model (position) VALUES ($1)', [entry.position]);
      await gate.pass();
    },
    async reset(tx: Tx): Promise<void> {
      await tx.query('DELETE FROM model');
      await gate.pass();
    },
  };
}

/** A stream holding `entries` entries, and a `model` table whose key refuses an entry applied twice. */
async function setup(entries: number): Promise<{ db: Db; stream: PgStream; clock: ManualClock }> {
  const opened = await openTestStream(cleanups, 'CREATE TABLE model (position bigint PRIMARY KEY)');
  if (entries > 0) await opened.stream.append('things', countedEvents(entries));
  return opened;
}

function runner(
  db: Db,
  projection: Projection,
  clock: ManualClock,
  options: Partial<ProjectionRunnerOptions> = {},
): ProjectionRunner {
  const run = new ProjectionRunner(db, projection, {
    name: 'model.v1',
    stream: 'things',
    clock,
    batchSize: 2,
    ...options,
  });
  cleanups.push(() => advanceUntil(clock, run.stop({ drainMs: 1000 })));
  return run;
}

/** `db` without LISTEN: a started runner then looks only every `pollIntervalMs`, on the clock. */
function deaf(db: Db): Db {
  return {
    dialect: db.dialect,
    schema: db.schema,
    query: (sql, params) => db.query(sql, params),
    transaction: (fn, options) => db.transaction(fn, options),
    listen: () => Promise.reject(new Error('no LISTEN here')),
    close: () => db.close(),
  };
}

async function modelRows(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM model');
  return rows[0]!.n;
}

/** Records the order in which the watched calls settle, and how. */
function settlements(): {
  watch: <T>(name: string, call: Promise<T>) => Promise<unknown>;
  order: string[];
  outcomes: Map<string, { value?: unknown; error?: unknown }>;
} {
  const order: string[] = [];
  const outcomes = new Map<string, { value?: unknown; error?: unknown }>();
  return {
    order,
    outcomes,
    watch: (name, call) =>
      call.then(
        (value) => {
          order.push(name);
          outcomes.set(name, { value });
        },
        (error: unknown) => {
          order.push(name);
          outcomes.set(name, { error });
        },
      ),
  };
}

/** A few turns of the event loop: what is not settled after them waits on something. */
async function turns(): Promise<void> {
  for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
}

describe('ProjectionRunner: stop() during catchUp() and rebuild()', () => {
  it('on a runner never started: the batch in hand commits, catchUp() rejects with KEEL_SERVICE_STATE saying what it applied, stop() resolves after', async () => {
    const { db, clock } = await setup(6);
    const gate = new Gate();
    const run = runner(db, gatedProjection(gate), clock);
    const states: string[] = [];
    run.events.on('state', ({ to }) => void states.push(to));
    const calls = settlements();
    gate.hold();
    const catchUp = calls.watch('catchUp', run.catchUp());
    await gate.reached;
    const stop = calls.watch('stop', run.stop());
    // The batch is in its transaction: neither has ended, and the runner is stopping.
    expect(run.state).toBe('stopping');
    await turns();
    expect(calls.order).toEqual([]);
    expect(clock.pendingTimers).toBe(1);

    gate.release();
    await Promise.all([catchUp, stop]);
    expect(calls.order).toEqual(['catchUp', 'stop']);
    expect(calls.outcomes.get('catchUp')?.error).toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      details: { applied: 2 },
      message: expect.stringContaining('after applying 2 entry(ies)') as unknown,
    });
    expect(await modelRows(db)).toBe(2);
    expect(await run.position()).toBe(2);
    expect(run.state).toBe('stopped');
    expect(states).toEqual(['stopping', 'stopped']);
    expect(clock.pendingTimers).toBe(0);
    // Stopped, it takes no new work.
    await expect(run.catchUp()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    expect(await modelRows(db)).toBe(2);
  });

  it('on a runner never started, past the drain deadline: stop() resolves, the batch in hand rolls back, catchUp() rejects with KEEL_SERVICE_STATE', async () => {
    const { db, clock } = await setup(6);
    const gate = new Gate();
    const run = runner(db, gatedProjection(gate), clock);
    const timeouts: number[] = [];
    run.events.on('drain-timeout', ({ drainMs }) => void timeouts.push(drainMs));
    const calls = settlements();
    gate.hold();
    const catchUp = calls.watch('catchUp', run.catchUp());
    await gate.reached;
    const stop = calls.watch('stop', run.stop({ drainMs: 1000 }));
    await clock.advance(999);
    await turns();
    expect(calls.order).toEqual([]);
    expect(run.state).toBe('stopping');

    await clock.advance(1);
    await stop;
    expect(calls.order).toEqual(['stop']);
    expect(run.state).toBe('stopped');
    expect(timeouts).toEqual([1000]);
    // Its apply ignores the abort: the batch rolls back once it returns.
    gate.release();
    await catchUp;
    expect(calls.outcomes.get('catchUp')?.error).toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      details: { applied: 0 },
      cause: { code: 'KEEL_ABORTED' },
    });
    expect(await modelRows(db)).toBe(0);
    expect(await run.position()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('on a started runner: its catchUp() ends the same way, and stop() resolves after it', async () => {
    const { db, stream, clock } = await setup(0);
    const gate = new Gate();
    const run = runner(deaf(db), gatedProjection(gate), clock, { pollIntervalMs: 3_600_000 });
    await run.start();
    // The loop has looked once, found nothing, and waits an hour for its next look.
    while (clock.pendingTimers === 0) await turns();
    await stream.append('things', countedEvents(6));
    const calls = settlements();
    gate.hold();
    const catchUp = calls.watch('catchUp', run.catchUp());
    await gate.reached;
    const stop = calls.watch('stop', run.stop());
    await turns();
    expect(calls.order).toEqual([]);
    expect(run.state).toBe('stopping');

    gate.release();
    await Promise.all([catchUp, stop]);
    expect(calls.order).toEqual(['catchUp', 'stop']);
    expect(calls.outcomes.get('catchUp')?.error).toMatchObject({
      code: 'KEEL_SERVICE_STATE',
      details: { applied: 2 },
    });
    expect(await modelRows(db)).toBe(2);
    expect(await run.position()).toBe(2);
    expect(clock.pendingTimers).toBe(0);
    await expect(run.catchUp()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
  });

  it('on a started runner, past the drain deadline: the loop’s batch in hand rolls back, with no error event', async () => {
    const { db, clock } = await setup(6);
    const gate = new Gate();
    const run = runner(deaf(db), gatedProjection(gate), clock, { pollIntervalMs: 3_600_000 });
    const errors: string[] = [];
    run.events.on('error', ({ during }) => void errors.push(during));
    gate.hold();
    await run.start();
    await gate.reached;
    const stop = run.stop({ drainMs: 1000 });
    await clock.advance(1000);
    await stop;
    expect(run.state).toBe('stopped');
    gate.release();
    // Waits on the position row's lock until the batch's transaction has ended.
    await db.query("SELECT position FROM keel_stream_positions WHERE projection = 'model.v1' FOR UPDATE");
    expect(await modelRows(db)).toBe(0);
    expect(await run.position()).toBe(0);
    expect(errors).toEqual(['listen']);
  });

  it('on a started runner: its LISTEN is released as stop() begins, not after a batch that outlasts the drain deadline', async () => {
    const { db, clock } = await setup(6);
    const gate = new Gate();
    const listens: { channel: string; released: boolean }[] = [];
    const heard: Db = {
      ...deaf(db),
      listen: async (channel, onNotify) => {
        const unlisten = await db.listen(channel, onNotify);
        const registration = { channel, released: false };
        listens.push(registration);
        return async () => {
          registration.released = true;
          await unlisten();
        };
      },
    };
    const run = runner(heard, gatedProjection(gate), clock, { pollIntervalMs: 3_600_000 });
    gate.hold();
    await run.start();
    await gate.reached;
    expect(listens).toEqual([{ channel: 'keel_stream', released: false }]);
    const stop = run.stop({ drainMs: 1000 });
    await clock.advance(1000);
    await stop;
    expect(run.state).toBe('stopped');
    // Its apply ignores the abort and still holds the batch: the LISTEN is not kept for it.
    expect(listens).toEqual([{ channel: 'keel_stream', released: true }]);
    gate.release();
    await db.query("SELECT position FROM keel_stream_positions WHERE projection = 'model.v1' FOR UPDATE");
    expect(await modelRows(db)).toBe(0);
  });

  it('stop() before catchUp()’s first batch: it rejects having applied none; on a stream with nothing to apply it resolves, caught up; a runner stopped unused refuses catchUp()', async () => {
    const { db, stream, clock } = await setup(0);
    const idle = runner(db, gatedProjection(new Gate()), clock);
    const caughtUp = idle.catchUp();
    await idle.stop();
    expect(await caughtUp).toBe(0);

    await stream.append('things', countedEvents(2));
    const other = runner(db, gatedProjection(new Gate()), clock, { name: 'other.v1' });
    const cut = other.catchUp();
    await other.stop();
    await expect(cut).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE', details: { applied: 0 } });
    expect(await modelRows(db)).toBe(0);

    const unused = runner(db, gatedProjection(new Gate()), clock, { name: 'unused.v1' });
    await unused.stop();
    expect(unused.state).toBe('stopped');
    await expect(unused.catchUp()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    expect(await modelRows(db)).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a rebuild() in flight on a runner never started: stop() waits for it, stopping meanwhile', async () => {
    const { db, clock } = await setup(4);
    const gate = new Gate();
    const run = runner(db, gatedProjection(gate), clock);
    expect(await run.catchUp()).toBe(4);
    const states: string[] = [];
    run.events.on('state', ({ to }) => void states.push(to));
    const calls = settlements();
    gate.hold();
    const rebuild = calls.watch('rebuild', run.rebuild());
    await gate.reached;
    const stop = calls.watch('stop', run.stop());
    expect(run.state).toBe('stopping');
    await turns();
    expect(calls.order).toEqual([]);

    gate.release();
    await Promise.all([rebuild, stop]);
    expect(calls.order).toEqual(['rebuild', 'stop']);
    expect(calls.outcomes.get('rebuild')).toEqual({ value: undefined });
    expect(states).toEqual(['stopping', 'stopped']);
    expect(await modelRows(db)).toBe(0);
    expect(await run.position()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });
});
