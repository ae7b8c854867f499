import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { isKeelError } from '../errors/index.ts';
import { outboxMigrations } from '../outbox/index.ts';
import { advanceUntil, createTestDb, type TestDb } from '../testing/index.ts';
import { constantBackoff, ManualClock } from '../time/index.ts';
import { defineSaga, type SagaStep, type SagaStepContext } from './definition.ts';
import type { SagaRunnerEvents } from './events.ts';
import { sagaReplyAddress } from './saga-command.ts';
import { SagaRunner } from './saga-runner.ts';
import { getSaga, listSagas, pruneSagas, retrySaga } from './saga-admin.ts';
import { deliverSagaReply, startSaga } from './saga-store.ts';
import { sagaMigrations } from './schema.ts';

const dbs: TestDb[] = [];
const runners: { runner: SagaRunner; clock: ManualClock }[] = [];
afterEach(async () => {
  for (const { runner, clock } of runners.splice(0)) {
    // The drain deadline is a timer on the manual clock.
    const stopped = runner.stop({ drainMs: 100 });
    await clock.advance(100);
    await stopped;
  }
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; clock: ManualClock }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, [...outboxMigrations, ...sagaMigrations]);
  return { db, clock: new ManualClock() };
}

/** An external service that applies each idempotency key once and logs every call. */
class Effects {
  readonly applied = new Map<string, number>();
  readonly calls: string[] = [];
  async apply(context: SagaStepContext): Promise<string> {
    this.calls.push(context.idempotencyKey);
    if (!this.applied.has(context.idempotencyKey)) this.applied.set(context.idempotencyKey, 1);
    return `${context.step}-done`;
  }
}

const fast = { maxAttempts: 3, backoff: constantBackoff(10) };

function threeSteps(effects: Effects, failAt?: string, version = 1, compensateOnFailure?: boolean) {
  const step = (name: string): SagaStep<{ order: string }> => ({
    name,
    ...(compensateOnFailure === undefined ? {} : { compensateOnFailure }),
    retry: fast,
    compensationRetry: { maxAttempts: 3, backoff: constantBackoff(10) },
    action: async (context) => {
      if (name === failAt) throw new Error(`${name} refused`);
      return effects.apply(context);
    },
    compensation: (context) => effects.apply(context),
  });
  return defineSaga<{ order: string }>({
    name: 'order',
    version,
    steps: [step('reserve'), step('charge'), step('ship')],
  });
}

/** Each state the runner enters, with the timers pending on `clock` as it does. */
function recordStates(runner: SagaRunner, clock: ManualClock): [string, number][] {
  const states: [string, number][] = [];
  runner.events.on('state', ({ to }) => states.push([to, clock.pendingTimers]));
  return states;
}

function record(runner: SagaRunner): string[] {
  const seen: string[] = [];
  const names = [
    'step-started',
    'step-completed',
    'step-failed',
    'compensation-started',
    'compensation-completed',
    'compensation-failed',
  ] as const satisfies (keyof SagaRunnerEvents)[];
  for (const name of names) runner.events.on(name, (e) => seen.push(`${name} ${e.step}`));
  runner.events.on('saga-state', (e) => seen.push(`state ${e.from}->${e.to}`));
  return seen;
}

describe('SagaRunner', () => {
  it('refuses to start on a database without its tables, naming them and the migrations', async () => {
    const db = await createTestDb();
    dbs.push(db);
    const runner = new SagaRunner({ db, sagas: [threeSteps(new Effects())], clock: new ManualClock() });
    const error = await runner.start().catch((e: unknown) => e);
    // The service base reports a failed start; the cause says why.
    expect(error).toMatchObject({ code: 'KEEL_SERVICE_STATE', cause: { code: 'KEEL_SCHEMA_MISSING' } });
    expect((error as Error).message).toMatch(/keel_saga_instances and keel_saga_history.*sagaMigrations/);
  });

  it('leaves no timer behind once stopped, also when only runDue() ran it (a script must be able to exit)', async () => {
    const { db, clock } = await setup();
    const saga = threeSteps(new Effects());
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    await startSaga(db, saga, { order: 'o-1' }, { clock });
    expect(await runner.runDue()).toBe(1);
    // Each step's timeout keeps one timer armed after its last call, until it fires or is cleared.
    expect(clock.pendingTimers).toBeGreaterThan(0);
    const states = recordStates(runner, clock);
    await runner.stop();
    // The timers are cleared inside the stop: at 'stopped' none is left.
    expect(states.map(([to]) => to)).toEqual(['stopping', 'stopped']);
    expect(states[0]![1]).toBeGreaterThan(0);
    expect(states[1]![1]).toBe(0);
    // Stopped takes no new work: a later runDue() leases nothing and arms nothing.
    await startSaga(db, saga, { order: 'o-2' }, { clock });
    expect(await runner.runDue()).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    // So does one stopped before it ever ran anything (it went straight to 'stopped').
    const unused = new SagaRunner({ db, sagas: [saga], clock });
    await unused.stop();
    expect(await unused.runDue()).toBe(0);
  });

  it('a started runner is stopping until its timers are cleared, and stopped only then, also past the drain deadline', async () => {
    const { db, clock } = await setup();
    let open = (): void => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    // A step that ignores its abort: the stop ends at the drain deadline with it still running.
    const saga = defineSaga({ name: 'deaf', version: 1, steps: [{ name: 'wait', action: () => gate }] });
    const runner = new SagaRunner({ db, sagas: [saga], clock, pollMs: 60_000 });
    await runner.start();
    const started = runner.events.once('step-started');
    const { id } = await startSaga(db, saga, {}, { clock });
    await started;
    const states = recordStates(runner, clock);
    const stopped = runner.stop({ drainMs: 100 });
    await clock.advance(100);
    await stopped;
    // At 'stopping' the poll, the heartbeat and the step's timeout are armed; at 'stopped', none.
    expect(states.map(([to]) => to)).toEqual(['stopping', 'stopped']);
    expect(states[0]![1]).toBeGreaterThan(2);
    expect(states[1]![1]).toBe(0);
    open();
    await expect.poll(async () => (await getSaga(db, id)).instance.leaseOwner).toBeNull();
  });

  it('a runner never started is stopping while the step in hand of its runDue() ends; runDue takes no more', async () => {
    const { db, clock } = await setup();
    let open = (): void => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const ran: string[] = [];
    const saga = defineSaga<{ order: string }>({
      name: 'gated',
      version: 1,
      steps: ['first', 'second'].map((name) => ({
        name,
        action: async (context: SagaStepContext<{ order: string }>) => {
          ran.push(`${context.input.order} ${name}`);
          if (name === 'first') await gate;
        },
      })),
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock, concurrency: 1 });
    await startSaga(db, saga, { order: 'o-1' }, { clock });
    await startSaga(db, saga, { order: 'o-2' }, { clock });
    const claimed: string[] = [];
    runner.events.on('claimed', (e) => claimed.push(e.instanceId));
    const started = runner.events.once('step-started');
    const due = runner.runDue();
    await started;
    const states: string[] = [];
    runner.events.on('state', ({ to }) => states.push(to));
    let stopped = false;
    const stop = runner.stop().then(() => (stopped = true));
    expect(runner.state).toBe('stopping');
    // A stop that had resolved would have had its turns by now.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    open();
    await stop;
    expect(states).toEqual(['stopping', 'stopped']);
    // The step in hand finished and its instance was handed back at the next; the other one was
    // never leased.
    expect(await due).toBe(1);
    expect(claimed).toHaveLength(1);
    expect(ran).toHaveLength(1);
    expect((await getSaga(db, claimed[0]!)).instance).toMatchObject({
      state: 'RUNNING',
      step: 1,
      leaseOwner: null,
    });
    const all = await listSagas(db, { saga: 'gated' });
    expect(all.map((i) => [i.step, i.leaseOwner]).sort()).toEqual([
      [0, null],
      [1, null],
    ]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('the drain deadline bounds the runDue() of a runner never started: its step is aborted, its instance handed back', async () => {
    const { db, clock } = await setup();
    let signal: AbortSignal | undefined;
    const saga = defineSaga({
      name: 'stuck',
      version: 1,
      steps: [
        {
          name: 'wait',
          timeoutMs: 600_000,
          retry: { maxAttempts: 1 },
          action: async (context) => {
            signal = context.signal;
            await new Promise((_, reject) =>
              context.signal.addEventListener('abort', () => reject(new Error('aborted'))),
            );
          },
        },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    const timeouts: number[] = [];
    runner.events.on('drain-timeout', ({ drainMs }) => timeouts.push(drainMs));
    const { id } = await startSaga(db, saga, {}, { clock });
    const started = runner.events.once('step-started');
    const due = runner.runDue();
    await started;
    let stopped = false;
    const stop = runner.stop({ drainMs: 100 }).then(() => (stopped = true));
    await clock.advance(99);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect([stopped, runner.state, signal?.aborted]).toEqual([false, 'stopping', false]);
    await clock.advance(1);
    await stop;
    expect([runner.state, signal?.aborted, timeouts]).toEqual(['stopped', true, [100]]);
    expect(await due).toBe(1);
    await expect.poll(async () => (await getSaga(db, id)).instance.leaseOwner).toBeNull();
    expect((await getSaga(db, id)).instance).toMatchObject({ state: 'RUNNING', step: 0 });
    expect(clock.pendingTimers).toBe(0);
  });

  it('runs the steps in order, records each result, and ends COMPLETED with its history', async () => {
    const { db, clock } = await setup();
    const effects = new Effects();
    const saga = threeSteps(effects);
    const runner = new SagaRunner({ db, sagas: [saga], clock, owner: 'r1' });
    const seen = record(runner);
    const { id } = await startSaga(db, saga, { order: 'o-1' }, { clock });
    expect(await runner.runDue()).toBe(1);

    const { instance, history } = await getSaga(db, id);
    expect(instance).toMatchObject({
      state: 'COMPLETED',
      version: 1,
      input: { order: 'o-1' },
      results: { reserve: 'reserve-done', charge: 'charge-done', ship: 'ship-done' },
      leaseOwner: null,
    });
    expect(instance.finishedAt).not.toBeNull();
    expect(effects.calls).toEqual([`${id}:reserve:action`, `${id}:charge:action`, `${id}:ship:action`]);
    expect(history.map((h) => [h.event, h.step])).toEqual([
      ['created', null],
      ['step-completed', 'reserve'],
      ['step-completed', 'charge'],
      ['step-completed', 'ship'],
      ['completed', null],
      ['state', null],
    ]);
    expect(seen).toEqual([
      'step-started reserve',
      'step-completed reserve',
      'step-started charge',
      'step-completed charge',
      'step-started ship',
      'step-completed ship',
      'state RUNNING->COMPLETED',
    ]);
    // A start with the same id is a no-op.
    expect(await startSaga(db, saga, { order: 'o-1' }, { clock, id })).toEqual({ id, created: false });
  });

  it('a step that fails for good compensates the completed steps in reverse and ends COMPENSATED', async () => {
    const { db, clock } = await setup();
    const effects = new Effects();
    const saga = threeSteps(effects, 'ship');
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    const seen = record(runner);
    const { id } = await startSaga(db, saga, { order: 'o-2' }, { clock, id: 'order-2' });
    await advanceUntil(clock, runner.runDue());

    const { instance, history } = await getSaga(db, id);
    expect(instance.state).toBe('COMPENSATED');
    expect(instance.failure).toMatchObject({ message: 'ship refused', step: 'ship' });
    expect(effects.calls).toEqual([
      'order-2:reserve:action',
      'order-2:charge:action',
      'order-2:charge:compensation',
      'order-2:reserve:compensation',
    ]);
    expect(history.find((h) => h.event === 'step-failed')).toMatchObject({ step: 'ship', attempt: 3 });
    expect(seen.slice(4)).toEqual([
      'step-started ship',
      'step-failed ship',
      'state RUNNING->COMPENSATING',
      'compensation-started charge',
      'compensation-completed charge',
      'compensation-started reserve',
      'compensation-completed reserve',
      'state COMPENSATING->COMPENSATED',
    ]);
  });

  it('with compensateOnFailure, the step that failed for good is compensated too (its effect may have applied), first, by its key', async () => {
    const { db, clock } = await setup();
    const effects = new Effects();
    const saga = threeSteps(effects, 'charge', 1, true);
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    const seen = record(runner);
    const { id } = await startSaga(db, saga, { order: 'o-3' }, { clock, id: 'order-3' });
    await advanceUntil(clock, runner.runDue());

    const { instance } = await getSaga(db, id);
    expect(instance.state).toBe('COMPENSATED');
    expect(instance.failure).toMatchObject({ message: 'charge refused', step: 'charge' });
    expect(effects.calls).toEqual([
      'order-3:reserve:action',
      'order-3:charge:compensation',
      'order-3:reserve:compensation',
    ]);
    expect(seen.slice(2)).toEqual([
      'step-started charge',
      'step-failed charge',
      'state RUNNING->COMPENSATING',
      'compensation-started charge',
      'compensation-completed charge',
      'compensation-started reserve',
      'compensation-completed reserve',
      'state COMPENSATING->COMPENSATED',
    ]);
    // The first step failing: its own compensation only.
    const first = threeSteps(new Effects(), 'reserve', 2, true);
    const runsFirst = new SagaRunner({ db, sagas: [first], clock });
    const { id: firstId } = await startSaga(db, first, { order: 'o-4' }, { clock, id: 'order-4' });
    await advanceUntil(clock, runsFirst.runDue());
    expect((await getSaga(db, firstId)).history.map((h) => [h.event, h.step ?? null])).toContainEqual([
      'compensation-completed',
      'reserve',
    ]);
    await runsFirst.stop();
  });

  it('parks a compensation that keeps failing in NEEDS_ATTENTION; retrySaga resumes it', async () => {
    const { db, clock } = await setup();
    let refunds = 0;
    let providerUp = false;
    const saga = defineSaga({
      name: 'pay',
      version: 1,
      steps: [
        {
          name: 'charge',
          action: async () => 'charged',
          compensation: async () => {
            if (!providerUp) throw new Error('provider down');
            refunds += 1;
          },
          compensationRetry: { maxAttempts: 2, backoff: constantBackoff(5) },
        },
        { name: 'confirm', action: () => Promise.reject(new Error('no')), retry: { maxAttempts: 1 } },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    const seen = record(runner);
    const { id } = await startSaga(db, saga, {}, { clock });
    await advanceUntil(clock, runner.runDue());
    expect(seen.slice(-3)).toEqual([
      'compensation-started charge',
      'compensation-failed charge',
      'state COMPENSATING->NEEDS_ATTENTION',
    ]);
    const parked = await getSaga(db, id);
    expect(parked.instance).toMatchObject({
      state: 'NEEDS_ATTENTION',
      step: 0,
      attempts: 2,
      lastError: { message: 'provider down', step: 'charge' },
      finishedAt: null,
    });
    expect((await listSagas(db, { state: 'NEEDS_ATTENTION' })).map((i) => i.id)).toEqual([id]);
    // Parked instances are not picked up again on their own.
    expect(await runner.runDue()).toBe(0);

    providerUp = true;
    await retrySaga(db, id, { clock, by: 'operator' });
    await advanceUntil(clock, runner.runDue());
    const done = await getSaga(db, id);
    expect(done.instance.state).toBe('COMPENSATED');
    expect(refunds).toBe(1);
    expect(done.history.map((h) => h.event)).toContain('retried-by-operator');
    await expect(retrySaga(db, id)).rejects.toThrow(
      /expected an instance in NEEDS_ATTENTION, got "COMPENSATED"/,
    );
    await expect(retrySaga(db, 'nope')).rejects.toSatisfy((e) => isKeelError(e, 'KEEL_NOT_FOUND'));
  });

  it('a crashed runner’s instance is taken over after its lease expires; the stale runner’s write is fenced off', async () => {
    const { db, clock } = await setup();
    const effects = new Effects();
    let release: (() => void) | undefined;
    const stuck = new Promise<void>((resolve) => (release = resolve));
    let first = true;
    const saga = defineSaga({
      name: 'lease',
      version: 1,
      steps: [
        {
          name: 'slow',
          timeoutMs: 60_000,
          action: async (context) => {
            if (first) {
              first = false;
              await stuck;
            }
            return effects.apply(context);
          },
        },
        { name: 'after', action: (context) => effects.apply(context) },
      ],
    });
    const a = new SagaRunner({ db, sagas: [saga], clock, owner: 'a', leaseMs: 1000 });
    const b = new SagaRunner({ db, sagas: [saga], clock, owner: 'b', leaseMs: 1000 });
    const lost: string[] = [];
    a.events.on('lease-lost', (e) => lost.push(e.instanceId));
    const { id } = await startSaga(db, saga, {}, { clock });
    const aRun = a.runDue();
    await expect.poll(() => first).toBe(false);
    // Still leased: nobody else may take it.
    expect(await b.runDue()).toBe(0);
    await clock.advance(1001);
    expect(await b.runDue()).toBe(1);
    release!();
    await aRun;
    expect(lost).toEqual([id]);
    const { instance, history } = await getSaga(db, id);
    expect(instance.state).toBe('COMPLETED');
    expect(history.find((h) => h.event === 'lease-taken-over')).toMatchObject({
      owner: 'b',
      detail: { from: 'a' },
    });
    // Both runners called the effect of 'slow', with the same key: the service applied it once.
    expect(effects.calls.filter((k) => k === `${id}:slow:action`)).toHaveLength(2);
    expect(effects.applied.get(`${id}:slow:action`)).toBe(1);
    expect(history.filter((h) => h.event === 'step-completed').map((h) => h.owner)).toEqual(['b', 'b']);
  });

  it('a started runner keeps its leases alive with heartbeats, wakes on NOTIFY, and hands back work on stop', async () => {
    const { db, clock } = await setup();
    let calls = 0;
    const saga = defineSaga({
      name: 'hb',
      version: 1,
      steps: [
        {
          name: 'wait',
          timeoutMs: 600_000,
          action: async (context) => {
            calls += 1;
            await new Promise((_, reject) =>
              context.signal.addEventListener('abort', () => reject(new Error('aborted'))),
            );
          },
        },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock, owner: 'live', leaseMs: 1000, pollMs: 60_000 });
    runners.push({ runner, clock });
    await runner.start();
    const claimed = runner.events.once('claimed');
    const { id } = await startSaga(db, saga, {}, { clock });
    await claimed;
    const other = new SagaRunner({ db, sagas: [saga], clock, owner: 'other', leaseMs: 1000 });
    // Three lease lengths pass; the heartbeat (every 333 ms) keeps the lease ahead of the clock.
    for (let i = 0; i < 15; i++) {
      await clock.advance(200);
      const floor = clock.now() + 600;
      await expect
        .poll(async () => (await getSaga(db, id)).instance.leaseUntil!.getTime(), {
          interval: 1,
          timeout: 5000,
        })
        .toBeGreaterThanOrEqual(floor);
      expect(await other.runDue()).toBe(0);
    }
    const stopped = runner.stop({ drainMs: 50 });
    await clock.advance(50);
    await stopped;
    // stop() resolves one turn after the drain deadline; the aborted step's hand-back write follows.
    await expect.poll(async () => (await getSaga(db, id)).instance.leaseOwner).toBeNull();
    expect((await getSaga(db, id)).instance).toMatchObject({ state: 'RUNNING', step: 0 });
    expect(calls).toBe(1);
  });

  it('a request step sends its command in the progress transaction and continues on the reply', async () => {
    const { db, clock } = await setup();
    const saga = defineSaga<{ sku: string }>({
      name: 'reserve',
      version: 1,
      steps: [
        {
          name: 'reserve',
          request: {
            destination: 'inventory',
            message: (context) => ({ type: 'inventory.reserve.v1', payload: { sku: context.input.sku } }),
            replyDeadlineMs: 5000,
          },
          compensation: {
            command: {
              destination: 'inventory',
              message: () => ({ type: 'inventory.release.v1', payload: {} }),
            },
          },
        },
        { name: 'use', action: async (context) => ({ got: context.results.reserve }) },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    const { id } = await startSaga(db, saga, { sku: 'a' }, { clock });
    await runner.runDue();
    const { rows } = await db.query<{ destination: string; type: string; headers: Record<string, string> }>(
      'SELECT destination, type, headers FROM keel_outbox',
    );
    expect(rows).toEqual([
      {
        destination: 'inventory',
        type: 'inventory.reserve.v1',
        headers: {
          'correlation-id': id,
          'keel-saga-instance': id,
          'keel-saga-step': 'reserve',
          'idempotency-key': `${id}:reserve:action`,
        },
      },
    ]);
    expect((await getSaga(db, id)).instance).toMatchObject({
      state: 'RUNNING',
      waitingFor: 'reserve',
      leaseOwner: null,
    });
    expect(await runner.runDue()).toBe(0);
    // The replying service reads where its reply goes from the command's headers.
    expect(sagaReplyAddress(rows[0]!)).toEqual({ instanceId: id, step: 'reserve' });
    expect(() => sagaReplyAddress({ headers: {} })).toThrow(/^command.headers: expected the headers/);

    expect(await deliverSagaReply(db, { instanceId: id, step: 'other', ok: true }, { clock })).toBe(false);
    expect(
      await deliverSagaReply(db, { instanceId: id, step: 'reserve', ok: true, result: 7 }, { clock }),
    ).toBe(true);
    expect(
      await deliverSagaReply(db, { instanceId: id, step: 'reserve', ok: true, result: 8 }, { clock }),
    ).toBe(false);
    await runner.runDue();
    expect((await getSaga(db, id)).instance).toMatchObject({
      state: 'COMPLETED',
      results: { reserve: 7, use: { got: 7 } },
    });
  });

  it('a missed reply deadline survives a restart: a new runner resends, then fails and compensates that step', async () => {
    const { db, clock } = await setup();
    const saga = defineSaga({
      name: 'deadline',
      version: 1,
      steps: [
        {
          name: 'ask',
          request: {
            destination: 'svc',
            message: () => ({ type: 'svc.do.v1', payload: {} }),
            replyDeadlineMs: 1000,
            maxSends: 2,
          },
          compensation: {
            command: { destination: 'svc', message: () => ({ type: 'svc.undo.v1', payload: {} }) },
          },
        },
      ],
    });
    const { id } = await startSaga(db, saga, {}, { clock });
    await new SagaRunner({ db, sagas: [saga], clock }).runDue();
    const restarted = new SagaRunner({ db, sagas: [saga], clock });
    expect(await restarted.runDue()).toBe(0);
    await clock.advance(1000);
    expect(await restarted.runDue()).toBe(1);
    await clock.advance(1000);
    await restarted.runDue();
    const { instance, history } = await getSaga(db, id);
    expect(instance.state).toBe('COMPENSATED');
    expect(instance.failure).toMatchObject({ code: 'KEEL_TIMEOUT', step: 'ask' });
    expect(history.filter((h) => h.event === 'command-sent').map((h) => h.attempt)).toEqual([1, 2]);
    const { rows } = await db.query<{ type: string; key: string }>(
      `SELECT type, headers->>'idempotency-key' AS key FROM keel_outbox ORDER BY seq`,
    );
    expect(rows).toEqual([
      { type: 'svc.do.v1', key: `${id}:ask:action` },
      { type: 'svc.do.v1', key: `${id}:ask:action` },
      { type: 'svc.undo.v1', key: `${id}:ask:compensation` },
    ]);
  });

  it('an instance finishes on the version it started with; a runner without that version leaves it alone', async () => {
    const { db, clock } = await setup();
    const effects = new Effects();
    const v1 = threeSteps(effects, undefined, 1);
    const v2 = defineSaga<{ order: string }>({
      name: 'order',
      version: 2,
      steps: [{ name: 'all-in-one', action: (context) => effects.apply(context) }],
    });
    const old = await startSaga(db, v1, { order: 'a' }, { clock });
    const current = await startSaga(db, v2, { order: 'b' }, { clock });
    expect(await new SagaRunner({ db, sagas: [v2], clock }).runDue()).toBe(1);
    expect((await getSaga(db, old.id)).instance.state).toBe('RUNNING');
    expect(await new SagaRunner({ db, sagas: [v1, v2], clock }).runDue()).toBe(1);
    expect((await getSaga(db, old.id)).instance).toMatchObject({ state: 'COMPLETED', version: 1 });
    expect((await getSaga(db, current.id)).instance).toMatchObject({ state: 'COMPLETED', version: 2 });
    expect(effects.calls.filter((k) => k.startsWith(old.id)).map((k) => k.split(':')[1])).toEqual([
      'reserve',
      'charge',
      'ship',
    ]);
  });

  it('pruneSagas deletes finished instances past the retention with their history, never parked or running ones', async () => {
    const { db, clock } = await setup();
    const effects = new Effects();
    const ok = threeSteps(effects);
    const parks = defineSaga({
      name: 'parks',
      version: 1,
      steps: [
        {
          name: 'a',
          action: async () => 1,
          compensation: () => Promise.reject(new Error('no')),
          compensationRetry: { maxAttempts: 1 },
        },
        { name: 'b', action: () => Promise.reject(new Error('no')), retry: { maxAttempts: 1 } },
      ],
    });
    const done = await startSaga(db, ok, { order: 'x' }, { clock });
    const parked = await startSaga(db, parks, {}, { clock });
    await new SagaRunner({ db, sagas: [ok, parks], clock }).runDue();
    const waiting = await startSaga(db, ok, { order: 'y' }, { clock });
    expect(await pruneSagas(db, { retentionMs: 1000, clock })).toBe(0);
    await clock.advance(1001);
    expect(await pruneSagas(db, { retentionMs: 1000, clock, batchSize: 1 })).toBe(1);
    await expect(getSaga(db, done.id)).rejects.toSatisfy((e) => isKeelError(e, 'KEEL_NOT_FOUND'));
    expect((await getSaga(db, parked.id)).instance.state).toBe('NEEDS_ATTENTION');
    expect((await getSaga(db, waiting.id)).instance.state).toBe('RUNNING');
    const { rows } = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM keel_saga_history WHERE instance_id = $1',
      [done.id],
    );
    expect(rows[0]!.n).toBe(0);
    await expect(pruneSagas(db, { retentionMs: -1 })).rejects.toThrow(/^retentionMs: expected/);
  });

  it('bad input fails at the boundary with KEEL_INVALID_ARGUMENT naming the field', async () => {
    const { db } = await setup();
    const action = async (): Promise<void> => undefined;
    expect(() => defineSaga({ name: 'bad name', version: 1, steps: [{ name: 'a', action }] })).toThrow(
      /saga.name/,
    );
    expect(() => defineSaga({ name: 'x', version: 0, steps: [{ name: 'a', action }] })).toThrow(
      /saga.version/,
    );
    expect(() => defineSaga({ name: 'x', version: 1, steps: [] })).toThrow(
      /saga.steps: expected a non-empty/,
    );
    expect(() =>
      defineSaga({
        name: 'x',
        version: 1,
        steps: [
          { name: 'a', action },
          { name: 'a', action },
        ],
      }),
    ).toThrow(/saga.steps.1.name: expected a name no other step/);
    expect(() => defineSaga({ name: 'x', version: 1, steps: [{ name: 'a' }] })).toThrow(
      /saga.steps.0: expected exactly one/,
    );
    expect(() =>
      defineSaga({ name: 'x', version: 1, steps: [{ name: 'a', action, timeoutMs: -1 }] }),
    ).toThrow(/saga.steps.0.timeoutMs/);
    expect(() =>
      defineSaga({ name: 'x', version: 1, steps: [{ name: 'a', action, compensateOnFailure: true }] }),
    ).toThrow(/saga.steps.0.compensateOnFailure: expected false for a step without a compensation/);
    expect(() =>
      defineSaga({
        name: 'x',
        version: 1,
        steps: [
          { name: 'a', action, compensation: action, compensateOnFailure: 'yes' as unknown as boolean },
        ],
      }),
    ).toThrow(/saga.steps.0.compensateOnFailure: expected a boolean/);
    expect(() =>
      defineSaga({
        name: 'x',
        version: 1,
        steps: [
          {
            name: 'a',
            request: { destination: 'd', message: () => ({ type: 't', payload: 1 }), replyDeadlineMs: 0 },
          },
        ],
      }),
    ).toThrow(/saga.steps.0.request.replyDeadlineMs/);
    const saga = defineSaga({ name: 'x', version: 1, steps: [{ name: 'a', action }] });
    await expect(startSaga(db, saga, {}, { id: 'has space' })).rejects.toThrow(/^id: expected an id/);
    expect(() => new SagaRunner({ db, sagas: [] })).toThrow(/sagas: expected a non-empty array/);
    expect(() => new SagaRunner({ db, sagas: [saga, saga] })).toThrow(
      /sagas.1: expected one definition per name@version/,
    );
    expect(() => new SagaRunner({ db, sagas: [saga], leaseMs: 100, heartbeatMs: 200 })).toThrow(
      /heartbeatMs/,
    );
    await expect(listSagas(db, { state: 'DONE' as never })).rejects.toThrow(/^state: expected RUNNING/);
    await expect(getSaga(db, 'missing')).rejects.toSatisfy((e) => isKeelError(e, 'KEEL_NOT_FOUND'));
  });
});
