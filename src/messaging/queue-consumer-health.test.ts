import { describe, expect, it } from 'vitest';
import { KeelError } from '../errors/index.ts';
import type { ServiceHealth } from '../service/index.ts';
import { ManualClock } from '../time/index.ts';
import type { ConnectionLoss, Delivery, DeliverySource } from './delivery-source.ts';
import { createEnvelope, type Envelope } from './envelope.ts';
import { PermanentError } from './handler.ts';
import { QueueConsumer } from './queue-consumer.ts';

type Call = 'claim' | 'ack' | 'extend' | 'retry' | 'deadLetter' | 'release';

/**
 * A source on a manual clock whose calls fail, as on a lost connection, while named in `down`;
 * with `leaseMs` it has leases the runtime renews (`extend`). `hangClaims` makes each claim wait
 * until `answerClaims()`, as on a connection that neither answers nor breaks. `loss` is what it
 * says of its own link (`connectionLost`), as a source the engine pushes into does: its claims
 * still answer, from memory.
 */
class FlakySource implements DeliverySource {
  readonly destination = 'jobs';
  readonly leaseMs: number | undefined;
  readonly extend: ((deliveries: readonly Delivery[]) => Promise<Delivery[]>) | undefined;
  readonly ready: Envelope[] = [];
  readonly calls: Call[] = [];
  readonly down = new Set<Call>();
  hangClaims = false;
  loss: ConnectionLoss | undefined;
  #hung: (() => void)[] = [];
  #wake: (() => void) | undefined;

  constructor(options: { leaseMs?: number } = {}) {
    this.leaseMs = options.leaseMs;
    this.extend =
      options.leaseMs === undefined
        ? undefined
        : async () => {
            this.#call('extend');
            return [];
          };
  }

  push(...envelopes: Envelope[]): void {
    this.ready.push(...envelopes);
    this.#wake?.();
  }
  answerClaims(): void {
    this.hangClaims = false;
    for (const answer of this.#hung.splice(0)) answer();
  }
  async open(wake: () => void): Promise<void> {
    this.#wake = wake;
  }
  async claim(max: number): Promise<Delivery[]> {
    if (this.hangClaims) await new Promise<void>((resolve) => this.#hung.push(resolve));
    this.#call('claim');
    return this.ready.splice(0, max).map((envelope) => ({ envelope, attempt: 1 }));
  }
  async ack(): Promise<void> {
    this.#call('ack');
  }
  async retry(): Promise<void> {
    this.#call('retry');
  }
  async deadLetter(): Promise<void> {
    this.#call('deadLetter');
  }
  async release(): Promise<void> {
    this.#call('release');
  }
  async close(): Promise<void> {}
  connectionLost(): ConnectionLoss | undefined {
    return this.loss;
  }

  #call(call: Call): void {
    this.calls.push(call);
    if (this.down.has(call)) throw new KeelError('KEEL_BROKER_UNAVAILABLE', `${call}: connection lost`);
  }
}

function message(payload: unknown): Envelope {
  return createEnvelope({ type: 'job.run.v1', payload });
}

function failing(health: ServiceHealth): Extract<ServiceHealth, { status: 'failing' }> {
  if (health.status !== 'failing') throw new Error(`expected failing, got ${JSON.stringify(health)}`);
  return health;
}

describe('QueueConsumer.health()', () => {
  it('is not-running before start and after stop, and ok once the broker answered', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock });
    expect(consumer.health()).toEqual({ status: 'not-running', state: 'idle' });
    await consumer.start();
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await clock.advance(5000);
    expect(consumer.health()).toMatchObject({ status: 'ok', lastContactAt: clock.now() });
    await consumer.stop();
    expect(consumer.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });

  it('is failing while claims fail, naming the broker, and ok again after the next claim that succeeds', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock, pollIntervalMs: 100 });
    await consumer.start();
    const lastContactAt = clock.now();
    source.down.add('claim');
    await clock.advance(100);
    const first = failing(consumer.health());
    expect(first).toMatchObject({
      dependency: 'broker',
      during: 'claim',
      since: clock.now(),
      failures: 1,
      lastError: { code: 'KEEL_BROKER_UNAVAILABLE' },
      lastContactAt,
    });
    // Its state says nothing of it: only health() does.
    expect(consumer.state).toBe('running');
    // The next failed claim comes after a backoff of 200 ms; `since` stays the first.
    await clock.advance(200);
    expect(failing(consumer.health())).toMatchObject({ failures: 2, since: first.since });

    source.down.delete('claim');
    await clock.advance(400);
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await consumer.stop();
  });

  it('is failing when an ack fails, and ok again when the broker next answers', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock, pollIntervalMs: 100 });
    await consumer.start();
    source.down.add('ack');
    const ackFailed = consumer.events.once('ack-failed');
    source.push(message('a'));
    await ackFailed;
    expect(failing(consumer.health())).toMatchObject({
      dependency: 'broker',
      during: 'ack',
      failures: 1,
      lastError: { code: 'KEEL_BROKER_UNAVAILABLE' },
    });
    source.down.delete('ack');
    await clock.advance(100);
    expect(consumer.health()).toMatchObject({ status: 'ok' });
    await consumer.stop();
  });

  it('stays ok when a handler throws: its retry and its dead-letter answered', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(
      source,
      async (m) => {
        if (m.payload === 'poison') throw new PermanentError('cannot read it');
        throw new Error('handler bug');
      },
      { clock },
    );
    await consumer.start();
    const retried = consumer.events.once('retried');
    const dead = consumer.events.once('dead-lettered');
    source.push(message('flaky'), message('poison'));
    await Promise.all([retried, dead]);
    expect(source.calls).toContain('retry');
    expect(source.calls).toContain('deadLetter');
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await consumer.stop();
  });

  it('is failing when the retry after a handler failure fails: that call is its own', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(
      source,
      async () => {
        throw new Error('handler bug');
      },
      { clock },
    );
    await consumer.start();
    source.down.add('retry');
    const settleFailed = consumer.events.once('error', { filter: (e) => e.during === 'settle' });
    source.push(message('a'));
    await settleFailed;
    expect(failing(consumer.health())).toMatchObject({
      dependency: 'broker',
      during: 'settle',
      failures: 1,
      lastError: { code: 'KEEL_BROKER_UNAVAILABLE' },
    });
    await consumer.stop();
  });

  it('is failing when lease renewals fail, and ok again after the next renewal', async () => {
    const clock = new ManualClock();
    const source = new FlakySource({ leaseMs: 3000 });
    let finish: () => void = () => undefined;
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => (finish = resolve)), {
      clock,
      pollIntervalMs: 100,
      prefetch: 0,
    });
    await consumer.start();
    source.push(message('slow'));
    await clock.advance(0);
    expect(consumer.stats.inFlight).toBe(1);
    // Every slot taken: no claim runs, only the heartbeat calls the broker (every 1 000 ms).
    source.down.add('extend');
    await clock.advance(1000);
    expect(failing(consumer.health())).toMatchObject({
      dependency: 'broker',
      during: 'heartbeat',
      failures: 1,
    });
    source.down.delete('extend');
    await clock.advance(1000);
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    finish();
    await consumer.stop();
  });

  it('with leases, is failing once no call has answered for leaseMs + pollIntervalMs (a claim hangs)', async () => {
    const clock = new ManualClock();
    const source = new FlakySource({ leaseMs: 3000 });
    const consumer = new QueueConsumer(source, async () => undefined, { clock, pollIntervalMs: 100 });
    await consumer.start();
    // The claim at the start answered; the next, a poll interval later, hangs.
    const lastContactAt = clock.now();
    source.hangClaims = true;
    await clock.advance(3100);
    expect(consumer.health()).toMatchObject({ status: 'ok' });
    await clock.advance(1);
    expect(consumer.health()).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: undefined,
      since: lastContactAt + 3100,
      failures: 0,
      lastError: undefined,
      lastContactAt,
    });
    source.answerClaims();
    await clock.advance(0);
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await consumer.stop();
  });

  it('with leases, a handler many leases long keeps it ok: the renewals answer', async () => {
    const clock = new ManualClock();
    const source = new FlakySource({ leaseMs: 3000 });
    let finish: () => void = () => undefined;
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => (finish = resolve)), {
      clock,
      prefetch: 0,
    });
    await consumer.start();
    source.push(message('slow'));
    await clock.advance(30_000);
    expect(consumer.health()).toMatchObject({ status: 'ok' });
    expect(source.calls.filter((call) => call === 'extend').length).toBeGreaterThanOrEqual(29);
    finish();
    await consumer.stop();
  });

  it('without leases, silence is not failing: a slow handler in every slot leaves nothing to call', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    let finish: () => void = () => undefined;
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => (finish = resolve)), {
      clock,
      prefetch: 0,
    });
    await consumer.start();
    source.push(message('slow'));
    await clock.advance(0);
    const calls = source.calls.length;
    await clock.advance(600_000);
    expect(source.calls).toHaveLength(calls);
    expect(consumer.health()).toMatchObject({ status: 'ok' });
    finish();
    await consumer.stop();
  });
});

describe('QueueConsumer.health() over a source that holds its own connection', () => {
  const cut = new KeelError('KEEL_BROKER_UNAVAILABLE', 'channel closed');
  const refused = new KeelError('KEEL_BROKER_UNAVAILABLE', 'connect ECONNREFUSED');

  it('is failing while the source says its link is lost, although every claim answers; ok once it is back', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock, pollIntervalMs: 100 });
    await consumer.start();
    await clock.advance(1000);
    const lostAt = clock.now();
    source.loss = { since: lostAt, attempts: 0, error: cut };
    expect(consumer.health()).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'connect',
      since: lostAt,
      failures: 0,
      lastError: cut,
      lastContactAt: lostAt,
    });

    // Claims go on meanwhile, answered from memory: they are no answer from the broker.
    const claims = source.calls.length;
    await clock.advance(500);
    expect(source.calls.length).toBeGreaterThan(claims);
    source.loss = { since: lostAt, attempts: 2, error: refused };
    expect(consumer.health()).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'connect',
      since: lostAt,
      failures: 2,
      lastError: refused,
      lastContactAt: lostAt,
    });

    // Back: ok at once, without waiting for a call; the last answer is still the one before the loss.
    source.loss = undefined;
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: lostAt });
    await clock.advance(100);
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await consumer.stop();
  });

  it('is failing while lost with every slot busy (no claim is made), and ok once back', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    let finish: () => void = () => undefined;
    const consumer = new QueueConsumer(source, () => new Promise<void>((resolve) => (finish = resolve)), {
      clock,
      prefetch: 0,
    });
    await consumer.start();
    source.push(message('slow'));
    await clock.advance(0);
    expect(consumer.stats.inFlight).toBe(1);
    const lastContactAt = clock.now();
    const calls = source.calls.length;

    await clock.advance(2000);
    const lostAt = clock.now();
    source.loss = { since: lostAt, attempts: 0, error: cut };
    await clock.advance(60_000);
    source.loss = { since: lostAt, attempts: 7, error: refused };
    expect(source.calls).toHaveLength(calls);
    expect(consumer.health()).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'connect',
      since: lostAt,
      failures: 7,
      lastError: refused,
      lastContactAt,
    });

    source.loss = undefined;
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt });
    finish();
    await consumer.stop();
  });

  it('names the earlier failure when its calls fail too: the claims before a later loss, or the loss before later acks', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock, pollIntervalMs: 100 });
    await consumer.start();
    source.down.add('claim');
    await clock.advance(100);
    const claimsFailedAt = clock.now();
    await clock.advance(50);
    source.loss = { since: clock.now(), attempts: 1, error: refused };
    expect(failing(consumer.health())).toMatchObject({
      during: 'claim',
      since: claimsFailedAt,
      failures: 1,
      lastError: { message: expect.stringMatching(/claim: connection lost/) as unknown },
    });

    // The other way round: lost first, then an ack fails.
    source.down.delete('claim');
    source.loss = undefined;
    await clock.advance(1000);
    expect(consumer.health()).toMatchObject({ status: 'ok' });
    const lostAt = clock.now();
    source.loss = { since: lostAt, attempts: 0, error: cut };
    await clock.advance(10);
    source.down.add('ack');
    const ackFailed = consumer.events.once('ack-failed');
    source.push(message('a'));
    await ackFailed;
    expect(failing(consumer.health())).toMatchObject({ during: 'connect', since: lostAt, lastError: cut });
    await consumer.stop();
  });

  it('keeps an earlier failure through a loss: claims that find nothing while lost are no answer', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock, pollIntervalMs: 100 });
    await consumer.start();
    const lastContactAt = clock.now();
    source.down.add('claim');
    await clock.advance(100);
    const claimsFailedAt = clock.now();
    await clock.advance(50);
    const lostAt = clock.now();
    source.loss = { since: lostAt, attempts: 0, error: cut };
    // The claims answer again, from memory: nothing is there.
    source.down.delete('claim');
    const claims = source.calls.length;
    await clock.advance(1000);
    expect(source.calls.length).toBeGreaterThan(claims + 1);
    expect(consumer.health()).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'claim',
      since: claimsFailedAt,
      failures: 1,
      lastError: expect.objectContaining({ code: 'KEEL_BROKER_UNAVAILABLE' }) as unknown,
      lastContactAt,
    });

    // Back: the next claim that finds nothing (on the poll, 50 ms on) is an answer again.
    source.loss = undefined;
    await clock.advance(49);
    expect(failing(consumer.health())).toMatchObject({ during: 'claim', since: claimsFailedAt });
    await clock.advance(1);
    expect(consumer.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });
    await consumer.stop();
  });

  it('keeps an earlier failure through a loss: claims that hand over messages pushed before it are no answer either', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    // The handlers hold their messages: no ack is made, so only the claims could be an answer.
    const handled: unknown[] = [];
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const consumer = new QueueConsumer(
      source,
      async (envelope) => {
        handled.push(envelope.payload);
        await finished;
      },
      { clock, pollIntervalMs: 100, concurrency: 2 },
    );
    await consumer.start();
    const lastContactAt = clock.now();
    source.down.add('claim');
    await clock.advance(100);
    const claimsFailedAt = clock.now();
    // Pushed into the process before the link went: the claims hand them over from memory.
    source.ready.push(message('a'), message('b'));
    await clock.advance(50);
    source.loss = { since: clock.now(), attempts: 0, error: cut };
    source.down.delete('claim');
    await clock.advance(1000);
    expect(handled).toEqual(['a', 'b']);
    expect(consumer.health()).toEqual({
      status: 'failing',
      dependency: 'broker',
      during: 'claim',
      since: claimsFailedAt,
      failures: 1,
      lastError: expect.objectContaining({ code: 'KEEL_BROKER_UNAVAILABLE' }) as unknown,
      lastContactAt,
    });
    source.loss = undefined;
    finish();
    await consumer.stop();
  });

  it('is not-running when stopped, lost or not', async () => {
    const clock = new ManualClock();
    const source = new FlakySource();
    const consumer = new QueueConsumer(source, async () => undefined, { clock });
    source.loss = { since: clock.now(), attempts: 0, error: cut };
    expect(consumer.health()).toEqual({ status: 'not-running', state: 'idle' });
    await consumer.start();
    expect(failing(consumer.health())).toMatchObject({ during: 'connect' });
    await consumer.stop();
    expect(consumer.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });
});
