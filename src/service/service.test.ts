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
