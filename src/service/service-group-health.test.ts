import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { ServiceBase } from './service.ts';
import { ServiceGroup } from './service-group.ts';
import { HealthRecord, type ReportsHealth, type ServiceHealth } from './service-health.ts';

/** A service that does nothing but keep the health record its test writes to. */
class Part extends ServiceBase implements ReportsHealth {
  readonly record: HealthRecord<'database' | 'broker'>;
  constructor(name: string, clock: ManualClock) {
    super(name, clock);
    this.record = new HealthRecord(clock, { database: {}, broker: {} });
  }
  health(): ServiceHealth {
    return this.record.health(this.state);
  }
  protected async onStart(): Promise<void> {
    this.record.started();
  }
  protected async onStop(): Promise<void> {}
}

/** A service that reports no health: the group leaves it out. */
class Silent extends ServiceBase {
  constructor() {
    super('silent');
  }
  protected async onStart(): Promise<void> {}
  protected async onStop(): Promise<void> {}
}

describe('ServiceGroup.health()', () => {
  it("lists its members' health and names the one failing longest as member/dependency", async () => {
    const clock = new ManualClock();
    const relay = new Part('relay', clock);
    const worker = new Part('worker', clock);
    const group = new ServiceGroup('shop', [new Silent(), relay, worker]);
    expect(group.health()).toEqual({ status: 'not-running', state: 'idle' });
    await group.start();
    expect(group.health()).toEqual({ status: 'ok', lastContactAt: undefined });
    expect(Object.keys(group.healthOfParts())).toEqual(['relay', 'worker']);

    worker.record.succeeded('database');
    const contact = clock.now();
    await clock.advance(5);
    const refused = new Error('connection refused');
    worker.record.failed('broker', refused, 'claim');
    await clock.advance(5);
    relay.record.failed('database', new Error('lost'), 'mark');
    expect(group.health()).toEqual({
      status: 'failing',
      dependency: 'worker/broker',
      during: 'claim',
      since: contact + 5,
      failures: 1,
      lastError: refused,
      lastContactAt: undefined,
    });
    expect(group.healthOfParts()).toMatchObject({
      relay: { status: 'failing', dependency: 'database' },
      worker: { status: 'failing', dependency: 'broker' },
    });

    worker.record.succeeded('broker');
    relay.record.succeeded('database');
    expect(group.health()).toEqual({ status: 'ok', lastContactAt: clock.now() });

    // A member stopped behind the group's back is failing, ahead of any other failure.
    await relay.stop();
    worker.record.failed('broker', refused, 'claim');
    expect(group.health()).toMatchObject({
      status: 'failing',
      dependency: 'relay',
      during: 'state stopped',
      since: 0,
    });

    await group.stop();
    expect(group.health()).toEqual({ status: 'not-running', state: 'stopped' });
  });
});
