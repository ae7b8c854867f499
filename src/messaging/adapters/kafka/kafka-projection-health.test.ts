// Without Kafka: how a projection runner's health() puts its looks' outcomes down to Kafka or to
// the database (LoopHealth, looks played by hand on a manual clock), and a runner with no Kafka
// to reach. Against a real Kafka and database: kafka-projection-health-with-kafka.test.ts.
import { describe, expect, it } from 'vitest';
import type { Db } from '../../../db/index.ts';
import { KeelError } from '../../../errors/index.ts';
import type { ServiceHealth } from '../../../service/index.ts';
import { advanceUntil } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { answered, fetchApi, wrapped } from './kafka-answers-test-support.ts';
import { KafkaProjectionRunner, type KafkaProjection } from './kafka-projection.ts';
import { LoopHealth, type ProjectionDependency } from './kafka-projection-health.ts';
import { KafkaPartitionTrimmedError, KafkaStaleOutOfRangeError } from './offset-out-of-range.ts';

const networkDown = (): KeelError =>
  new KeelError('KEEL_BROKER_UNAVAILABLE', 'could not fetch: ECONNREFUSED');
const dbDown = (): KeelError => new KeelError('KEEL_DB_UNAVAILABLE', 'connection to the database lost');

function loop(clock: ManualClock, silentMs = 30_000): { health: LoopHealth; phase: { now: string } } {
  const phase = { now: 'fetch' };
  const health = new LoopHealth(clock, silentMs, () => phase.now);
  health.started();
  return { health, phase };
}

/** A call to `dependency` that answers `value`, or throws `error`. */
function answering<T>(health: LoopHealth, dependency: ProjectionDependency, value: T): Promise<T> {
  return health.call(dependency, async () => value);
}
function refusing(health: LoopHealth, dependency: ProjectionDependency, error: Error): Promise<never> {
  return health.call(dependency, async () => {
    throw error;
  });
}

/** A look as the runner's: metadata, the stored offsets, a fetch, then a batch with `apply`. */
async function look(
  health: LoopHealth,
  steps: { fetch?: Error; readStored?: Error; transaction?: Error; apply?: Error; afterFetch?: Error } = {},
): Promise<void> {
  await answering(health, 'broker', 'metadata');
  if (steps.readStored) await refusing(health, 'database', steps.readStored);
  await answering(health, 'database', 'offsets');
  if (steps.fetch) await refusing(health, 'broker', steps.fetch);
  await answering(health, 'broker', 'records');
  if (steps.afterFetch) throw steps.afterFetch;
  await health.call('database', async () => {
    await health.projection(async () => {
      if (steps.apply) throw steps.apply;
    });
    if (steps.transaction) throw steps.transaction;
  });
}

/** Plays a look and records its outcome as the runner's loop does. */
async function played(
  health: LoopHealth,
  steps: Parameters<typeof look>[1] = {},
  options: { during?: string; quiet?: boolean } = {},
): Promise<void> {
  try {
    await look(health, steps);
  } catch (error) {
    health.lookFailed(error, options.during ?? 'fetch', options.quiet ?? false);
    return;
  }
  health.lookedThrough();
}

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

describe('LoopHealth: a projection runner’s looks, by dependency', () => {
  it('is ok once a look goes through, with its time; not-running whatever it holds when the runner is not', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
    await clock.advance(10);
    await played(health);
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await played(health, { fetch: networkDown() });
    expect(health.health('stopped')).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('counts a look whose fetch fails once against Kafka, although its metadata answered, from the first; ok after the next look through', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    await played(health);
    const okAt = clock.now();
    await clock.advance(1000);
    const error = networkDown();
    await played(health, { fetch: error });
    const first = failing(health.health('running'));
    expect(first).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'fetch',
      since: clock.now(),
      failures: 1,
      lastError: error,
      // Kafka's last answer in a look that went through: its metadata this time does not count.
      lastContactAt: okAt,
    });
    for (let n = 0; n < 2; n++) {
      await clock.advance(1000);
      await played(health, { fetch: networkDown() });
    }
    expect(health.health('running')).toMatchObject({ dependency: 'broker', since: first.since, failures: 3 });
    await clock.advance(1000);
    await played(health);
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('names the database when its statements fail, during the phase the loop was in, and Kafka answering does not clear it', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    const lost = dbDown();
    await played(health, { readStored: lost }, { during: 'fetch' });
    expect(health.health('running')).toMatchObject({
      dependency: 'database',
      during: 'fetch',
      failures: 1,
      lastError: lost,
    });
    await clock.advance(1000);
    await played(health, { transaction: dbDown() }, { during: 'apply' });
    expect(health.health('running')).toMatchObject({ dependency: 'database', during: 'apply', failures: 2 });
    await played(health);
    expect(health.health('running')).toMatchObject({ status: 'ok' });
  });

  it('is not failing for the projection’s own apply throwing, nor for what Kafka said of the data', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    await played(health, { apply: new Error('model constraint violated') }, { during: 'apply' });
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await played(health, { afterFetch: new KafkaPartitionTrimmedError('orders', 0, 5n, 9n) });
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('a quiet stale-leader failure is not failing, nor clears one; the first reported one is, from then', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    const stale = (): KeelError => wrapped(answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER'));
    await played(health);
    for (let n = 0; n < 3; n++) {
      await clock.advance(1000);
      await played(health, { fetch: stale() }, { quiet: true });
      expect(health.health('running')).toMatchObject({ status: 'ok' });
    }
    await clock.advance(1000);
    const reported = stale();
    await played(health, { fetch: reported }, { quiet: false });
    expect(health.health('running')).toMatchObject({
      dependency: 'broker',
      since: clock.now(),
      failures: 1,
      lastError: reported,
    });
    // Quiet again (a new run of them after other failures): the failure stands until a look goes through.
    await played(health, { fetch: stale() }, { quiet: true });
    expect(health.health('running')).toMatchObject({ status: 'failing', failures: 1 });
  });

  it('a fetch refused as out of range for offsets the ranges show valid is the broker’s, though each call answered: quiet, it neither fails nor clears; reported, it fails', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    const stale = (): KafkaStaleOutOfRangeError =>
      new KafkaStaleOutOfRangeError(
        'orders',
        new Map([[0, 3n]]),
        'OFFSET_OUT_OF_RANGE',
        answered(fetchApi, 'OFFSET_OUT_OF_RANGE'),
      );
    await played(health);
    const okAt = clock.now();
    await clock.advance(1000);
    await played(health, { afterFetch: stale() }, { quiet: true });
    // Kafka's metadata and ranges answered that look, yet it does not count as one through.
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await clock.advance(1000);
    const reported = stale();
    await played(health, { afterFetch: reported }, { quiet: false });
    expect(health.health('running')).toMatchObject({
      status: 'failing',
      dependency: 'broker',
      during: 'fetch',
      since: clock.now(),
      failures: 1,
      lastError: reported,
      // Kafka's last answer in a look that went through: not the metadata and ranges of these.
      lastContactAt: okAt,
    });
    await played(health, { afterFetch: stale() }, { quiet: true });
    expect(health.health('running')).toMatchObject({ status: 'failing', failures: 1 });
  });

  it('is failing for a call unanswered for longer than silentMs, naming it, but not for a long apply in a transaction', async () => {
    const clock = new ManualClock();
    const { health, phase } = loop(clock, 5000);
    await played(health);
    const okAt = clock.now();

    // A statement that does not answer.
    let answer: (() => void) | undefined;
    phase.now = 'apply';
    const hung = health.call('database', () => new Promise<void>((resolve) => (answer = resolve)));
    await clock.advance(5000);
    expect(health.health('running')).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(health.health('running')).toEqual({
      status: 'failing',
      dependency: 'database',
      during: 'apply',
      since: okAt + 5000,
      failures: 0,
      lastError: undefined,
      lastContactAt: okAt,
    });
    answer!();
    await hung;
    health.lookedThrough();
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });

    // The projection's own code inside the transaction takes long: no call waits meanwhile.
    let applied: (() => void) | undefined;
    const batch = health.call('database', () =>
      health.projection(() => new Promise<void>((resolve) => (applied = resolve))),
    );
    await clock.advance(60_000);
    expect(health.health('running')).toMatchObject({ status: 'ok' });
    applied!();
    await batch;
    health.lookedThrough();
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: clock.now() });
  });

  it('started() forgets earlier outcomes', async () => {
    const clock = new ManualClock();
    const { health } = loop(clock);
    await played(health, { fetch: networkDown() });
    expect(health.health('running').status).toBe('failing');
    health.started();
    expect(health.health('running')).toEqual({ status: 'ok', lastContactAt: undefined });
  });
});

describe('KafkaProjectionRunner.health() with no Kafka to reach', () => {
  const db = { transaction: () => Promise.reject(new Error('not used')) } as unknown as Db;
  const projection: KafkaProjection = { apply: async () => undefined, reset: async () => undefined };

  it('is not-running before the start, failing on the broker while each look fails, not-running after the stop', async () => {
    const clock = new ManualClock();
    const run = new KafkaProjectionRunner(db, projection, {
      name: 'p',
      topic: 't',
      // Nothing listens on port 1: each connection is refused at once.
      brokers: ['127.0.0.1:1'],
      clock,
      retryDelayMs: 5000,
    });
    expect(run.health()).toEqual({ status: 'not-running', state: 'idle' });
    const first = run.events.once('error');
    await run.start();
    const { error } = await first;
    // Still running: only health() and the error events say that nothing is applied.
    expect(run.state).toBe('running');
    const health = failing(run.health());
    expect(health).toMatchObject({
      dependency: 'broker',
      during: 'fetch',
      failures: 1,
      lastError: { code: 'KEEL_BROKER_UNAVAILABLE' },
      lastContactAt: undefined,
    });
    expect(health.lastError).toBe(error);
    await advanceUntil(clock, run.events.once('error'), { stepMs: 1000 });
    expect(run.health()).toMatchObject({ status: 'failing', since: health.since, failures: 2 });
    await run.stop({ drainMs: 1000 });
    expect(run.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('refuses a silentMs that is not an integer >= 1, by field', () => {
    for (const silentMs of [0, -1, 1.5, Number.NaN])
      expect(() => new KafkaProjectionRunner(db, projection, { name: 'p', topic: 't', silentMs })).toThrow(
        expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT', field: 'silentMs' }),
      );
    expect(new KafkaProjectionRunner(db, projection, { name: 'p', topic: 't', silentMs: 1 }).projection).toBe(
      'p',
    );
  });
});
