import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { ServiceBase, type ServiceState } from './service.ts';
import { ServiceGroup } from './service-group.ts';

class Worker extends ServiceBase<{ 'job-done': { id: number } }> {
  started = 0;
  stopped = 0;
  work: Promise<void> | undefined;
  honourAbort = true;
  release: (() => void) | undefined;
  drainSignal: AbortSignal | undefined;

  constructor(clock: ManualClock) {
    super('worker', clock);
  }

  protected override async onStart(): Promise<void> {
    this.started++;
  }

  /** Starts a piece of work that blocks until released (or aborted, if it honours aborts). */
  begin(): void {
    this.work = new Promise<void>((resolve) => (this.release = resolve));
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.stopped++;
    this.drainSignal = drain;
    if (this.work === undefined) return;
    if (this.honourAbort) drain.addEventListener('abort', () => this.release?.());
    await this.work;
  }
}

/** A service whose stop has more to wait for: `afterDrain`, and the work of a run never started. */
class Waiter extends ServiceBase {
  readonly seen: ServiceState[] = [];
  /** Set by `hold`: what `afterDrain` and `onStopUnstarted` wait for. */
  pending: Promise<void> | undefined;
  release: (() => void) | undefined;
  inHand = false;
  /** What the hooks saw: their calls, the state then, and the drain signal. */
  readonly calls: string[] = [];
  drainSignal: AbortSignal | undefined;
  /** What `onStop` waits for, abort or not. */
  stopWork: Promise<void> | undefined;
  startFails = false;
  afterDrainFails = false;

  constructor(clock: ManualClock) {
    super('waiter', clock);
    this.events.on('state', ({ to }) => this.seen.push(to));
  }

  hold(): void {
    this.pending = new Promise<void>((resolve) => (this.release = resolve));
  }

  protected override async onStart(): Promise<void> {
    if (this.startFails) throw new Error('no');
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    this.calls.push(`onStop:${this.state}`);
    this.drainSignal = drain;
    await this.stopWork;
  }

  protected override async afterDrain(): Promise<void> {
    this.calls.push(`afterDrain:${this.state}`);
    await this.pending;
    if (this.afterDrainFails) throw new Error('could not let go');
  }

  protected override hasWorkInHand(): boolean {
    return this.inHand;
  }

  protected override async onStopUnstarted(drain: AbortSignal): Promise<void> {
    this.calls.push(`onStopUnstarted:${this.state}`);
    this.drainSignal = drain;
    await this.pending;
  }
}

/** Whether `promise` has settled, after the microtasks and one turn of the event loop. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('ServiceBase', () => {
  it('goes idle → starting → running → stopping → stopped, emitting each change', async () => {
    const clock = new ManualClock();
    const service = new Worker(clock);
    const seen: ServiceState[] = [];
    service.events.on('state', ({ to }) => seen.push(to));
    await service.start();
    await service.stop();
    expect(seen).toEqual(['starting', 'running', 'stopping', 'stopped']);
  });

  it('start is a no-op while running; stop is idempotent and returns one promise', async () => {
    const service = new Worker(new ManualClock());
    await service.start();
    await service.start();
    expect(service.started).toBe(1);
    const a = service.stop();
    const b = service.stop();
    expect(a).toBe(b);
    await a;
    expect(service.stopped).toBe(1);
  });

  it('refuses to start again after stopping, with KEEL_SERVICE_STATE', async () => {
    const service = new Worker(new ManualClock());
    await service.start();
    await service.stop();
    await expect(service.start()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
  });

  it('stop before start goes straight to stopped without calling onStop', async () => {
    const service = new Worker(new ManualClock());
    await service.stop();
    expect(service.state).toBe('stopped');
    expect(service.stopped).toBe(0);
  });

  it('waits for in-flight work to finish within the drain budget', async () => {
    const clock = new ManualClock();
    const service = new Worker(clock);
    await service.start();
    service.begin();
    let stopped = false;
    const stopping = service.stop({ drainMs: 1000 }).then(() => (stopped = true));
    await clock.advance(500);
    expect(stopped).toBe(false);
    service.release?.();
    await stopping;
    expect(service.drainSignal?.aborted).toBe(false);
  });

  it('aborts in-flight work when the drain deadline passes', async () => {
    const clock = new ManualClock();
    const service = new Worker(clock);
    await service.start();
    service.begin();
    const timeouts: number[] = [];
    service.events.on('drain-timeout', ({ drainMs }) => timeouts.push(drainMs));
    const stopping = service.stop({ drainMs: 1000 });
    await clock.advance(1000);
    await stopping;
    expect(service.drainSignal?.aborted).toBe(true);
    expect(timeouts).toEqual([1000]);
  });

  it('resolves stop even when blocked work ignores the abort', async () => {
    const clock = new ManualClock();
    const service = new Worker(clock);
    service.honourAbort = false;
    await service.start();
    service.begin();
    const stopping = service.stop({ drainMs: 100 });
    await clock.advance(100);
    await stopping;
    expect(service.state).toBe('stopped');
    service.release?.();
  });

  it('afterDrain runs after onStop, the service stopping until it ends and stop() resolves', async () => {
    const clock = new ManualClock();
    const service = new Waiter(clock);
    await service.start();
    service.hold();
    const stopping = service.stop({ drainMs: 1000 });
    expect(await settled(stopping)).toBe(false);
    expect(service.calls).toEqual(['onStop:stopping', 'afterDrain:stopping']);
    expect(service.state).toBe('stopping');
    // Its wait is its own: the drain deadline neither fires nor cuts it short.
    expect(clock.pendingTimers).toBe(0);
    await clock.advance(5000);
    expect(await settled(stopping)).toBe(false);
    expect(service.state).toBe('stopping');

    service.release?.();
    await stopping;
    expect(service.state).toBe('stopped');
    expect(service.seen).toEqual(['starting', 'running', 'stopping', 'stopped']);
    expect(service.drainSignal?.aborted).toBe(false);
  });

  it('afterDrain runs once the drain deadline passed too; a throw is an error event, and stop() resolves', async () => {
    const clock = new ManualClock();
    const service = new Waiter(clock);
    const errors: string[] = [];
    service.events.on('error', ({ error, during }) => errors.push(`${during}: ${String(error)}`));
    await service.start();
    // onStop ignores the abort and never ends.
    service.stopWork = new Promise<void>(() => undefined);
    service.hold();
    service.afterDrainFails = true;
    const stopping = service.stop({ drainMs: 100 });
    await clock.advance(100);
    expect(await settled(stopping)).toBe(false);
    expect(service.drainSignal?.aborted).toBe(true);
    expect(service.calls).toEqual(['onStop:stopping', 'afterDrain:stopping']);
    expect(service.state).toBe('stopping');

    service.release?.();
    await stopping;
    expect(service.state).toBe('stopped');
    expect(service.seen).toEqual(['starting', 'running', 'stopping', 'stopped']);
    expect(errors).toEqual(['stop: Error: could not let go']);
  });

  it('a service never started with work in hand is stopping while onStopUnstarted runs, stopped after; afterDrain does not follow', async () => {
    const clock = new ManualClock();
    const service = new Waiter(clock);
    service.inHand = true;
    service.hold();
    const stopping = service.stop({ drainMs: 1000 });
    expect(await settled(stopping)).toBe(false);
    expect(service.calls).toEqual(['onStopUnstarted:stopping']);
    expect(service.state).toBe('stopping');
    await clock.advance(500);
    expect(await settled(stopping)).toBe(false);

    service.release?.();
    await stopping;
    expect(service.state).toBe('stopped');
    expect(service.seen).toEqual(['stopping', 'stopped']);
    expect(service.calls).toEqual(['onStopUnstarted:stopping']);
    expect(service.drainSignal?.aborted).toBe(false);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a service never started with work in hand: past the drain deadline its drain aborts, drain-timeout is emitted, and stop() resolves', async () => {
    const clock = new ManualClock();
    const service = new Waiter(clock);
    service.inHand = true;
    // Its work ignores the abort.
    service.hold();
    const timeouts: number[] = [];
    service.events.on('drain-timeout', ({ drainMs }) => timeouts.push(drainMs));
    const stopping = service.stop({ drainMs: 1000 });
    await clock.advance(999);
    expect(await settled(stopping)).toBe(false);
    expect(service.state).toBe('stopping');

    await clock.advance(1);
    await stopping;
    expect(timeouts).toEqual([1000]);
    expect(service.drainSignal?.aborted).toBe(true);
    expect(service.state).toBe('stopped');
    expect(service.seen).toEqual(['stopping', 'stopped']);
    service.release?.();
  });

  it('a service whose start failed, with work in hand, drains it too', async () => {
    const service = new Waiter(new ManualClock());
    service.startFails = true;
    await expect(service.start()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
    service.inHand = true;
    service.hold();
    const stopping = service.stop();
    expect(await settled(stopping)).toBe(false);
    expect(service.state).toBe('stopping');
    service.release?.();
    await stopping;
    expect(service.seen).toEqual(['starting', 'failed', 'stopping', 'stopped']);
    expect(service.calls).toEqual(['onStopUnstarted:stopping']);
  });

  it('works with await using', async () => {
    const clock = new ManualClock();
    let ref: Worker | undefined;
    {
      await using service = new Worker(clock);
      ref = service;
      await service.start();
    }
    expect(ref.state).toBe('stopped');
  });

  it('lets tests await typed events instead of sleeping', async () => {
    const service = new Worker(new ManualClock());
    const done = service.events.once('job-done', { filter: ({ id }) => id === 2 });
    service.events.emit('job-done', { id: 1 });
    service.events.emit('job-done', { id: 2 });
    await expect(done).resolves.toEqual({ id: 2 });
  });
});

describe('ServiceGroup', () => {
  it('starts in order and stops in reverse', async () => {
    const clock = new ManualClock();
    const order: string[] = [];
    const make = (name: string): Worker => {
      const worker = new Worker(clock);
      worker.events.on('state', ({ to }) => order.push(`${name}:${to}`));
      return worker;
    };
    const group = new ServiceGroup('app', [make('db'), make('consumer')]);
    await group.start();
    await group.stop();
    expect(order.filter((line) => /running|stopped/.test(line))).toEqual([
      'db:running',
      'consumer:running',
      'consumer:stopped',
      'db:stopped',
    ]);
  });
});
