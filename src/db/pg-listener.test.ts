import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { KeelError } from '../errors/index.ts';
import { ManualClock } from '../time/index.ts';
import { PgListener } from './pg-listener.ts';

/** A stand-in for a pg.Client: records its queries, and can drop its connection on demand. */
class FakeClient extends EventEmitter {
  readonly queries: string[] = [];
  ended = false;
  async query(sql: string): Promise<void> {
    this.queries.push(sql);
  }
  async end(): Promise<void> {
    this.ended = true;
  }
  notify(channel: string, payload: string): void {
    this.emit('notification', { channel, payload, processId: 1 });
  }
  drop(): void {
    this.emit('error', new Error('Connection terminated unexpectedly'));
    this.emit('end');
  }
}

/** Connect attempts answer from a script: a client, or a failure. */
function harness(script: ('up' | 'down')[]): {
  listener: PgListener;
  clock: ManualClock;
  clients: FakeClient[];
  attempts: () => number;
} {
  const clock = new ManualClock();
  const clients: FakeClient[] = [];
  let attempts = 0;
  const listener = new PgListener({
    clock,
    backoffInitialMs: 100,
    backoffMaxMs: 1000,
    connect: async () => {
      const outcome = script[attempts] ?? 'up';
      attempts += 1;
      if (outcome === 'down')
        throw new KeelError('KEEL_DB_UNAVAILABLE', 'PostgreSQL at test:5432 is unreachable');
      const client = new FakeClient();
      clients.push(client);
      return client as unknown as pg.Client;
    },
  });
  return { listener, clock, clients, attempts: () => attempts };
}

/** Lets promise callbacks run (the listener's work queue) without advancing the clock. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe('PgListener', () => {
  it('LISTENs once per channel, delivers to every callback, UNLISTENs with the last', async () => {
    const { listener, clients } = harness([]);
    const a: string[] = [];
    const b: string[] = [];
    const stopA = await listener.add('orders', (p) => a.push(p));
    const stopB = await listener.add('orders', (p) => b.push(p));
    const client = clients[0];
    expect(client?.queries).toEqual(['LISTEN "orders"']);
    client?.notify('orders', 'one');
    client?.notify('other', 'ignored');
    expect(a).toEqual(['one']);
    expect(b).toEqual(['one']);
    await stopA();
    await stopA();
    client?.notify('orders', 'two');
    expect(a).toEqual(['one']);
    expect(b).toEqual(['one', 'two']);
    await stopB();
    expect(client?.queries).toEqual(['LISTEN "orders"', 'UNLISTEN "orders"']);
    await listener.close();
    expect(client?.ended).toBe(true);
  });

  it('reconnects after a drop with doubling backoff, capped, and LISTENs again on every channel', async () => {
    const { listener, clock, clients, attempts } = harness(['up', 'down', 'down', 'down', 'down', 'down']);
    const heard: string[] = [];
    await listener.add('orders', (p) => heard.push(p));
    await listener.add('payments', (p) => heard.push(p));
    clients[0]?.drop();
    expect(listener.connected).toBe(false);

    // Attempts at +100, +200, +400, +800, then +1000 (the cap); the sixth succeeds.
    const waits: number[] = [];
    while (attempts() < 7) {
      const next = clock.nextTimerIn();
      expect(next).toBeDefined();
      waits.push(next ?? 0);
      await clock.advance(next ?? 0);
      await settle();
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(listener.connected).toBe(true);
    expect(listener.reconnects).toBe(1);
    expect(clients[1]?.queries).toEqual(['LISTEN "orders"', 'LISTEN "payments"']);
    clients[1]?.notify('payments', 'back');
    expect(heard).toEqual(['back']);

    // After a success the backoff starts again from the beginning.
    clients[1]?.drop();
    expect(clock.nextTimerIn()).toBe(100);
    await listener.close();
    expect(clock.pendingTimers).toBe(0);
  });

  it('rejects the first listen when the server is down, and connects on the next one', async () => {
    const { listener, clients } = harness(['down', 'up']);
    await expect(listener.add('orders', () => undefined)).rejects.toMatchObject({
      code: 'KEEL_DB_UNAVAILABLE',
    });
    await listener.add('orders', () => undefined);
    expect(clients[0]?.queries).toEqual(['LISTEN "orders"']);
    await listener.close();
  });

  it('does not reconnect once closed, nor with no channel left', async () => {
    const { listener, clock, clients } = harness([]);
    const stop = await listener.add('orders', () => undefined);
    await stop();
    clients[0]?.drop();
    expect(clock.pendingTimers).toBe(0);
    await listener.add('orders', () => undefined);
    await listener.close();
    clients[1]?.drop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('keeps delivering to the others when one callback throws, and reports the throw', async () => {
    const { listener, clients } = harness([]);
    const heard: string[] = [];
    const reported = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
    await listener.add('orders', () => {
      throw new Error('listener bug');
    });
    await listener.add('orders', (p) => heard.push(p));
    clients[0]?.notify('orders', 'x');
    expect(heard).toEqual(['x']);
    expect(await reported).toMatchObject({ message: 'listener bug' });
    await listener.close();
  });
});
