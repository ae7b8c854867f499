import { describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/time/index.ts';
import type { Db } from '../../../src/db/index.ts';
import { importAdapter, openBroker } from './open-broker.ts';

// Opening builds the adapter; none connects before its first publish or source.
const deps = { db: {} as Db, clock: systemClock };

describe('openBroker', () => {
  it.each([
    ['rabbitmq', 'amqp://guest:guest@127.0.0.1:5672'],
    ['kafka', '127.0.0.1:9092'],
    ['nats', '127.0.0.1:4222'],
    ['redis', 'redis://127.0.0.1:6379/2'],
  ] as const)('builds the %s adapter', async (kind, url) => {
    const broker = await openBroker({ kind, url }, deps);
    expect(broker.name).toContain(kind);
    await broker.close();
  });

  it('names the missing client package of a broker, and how to install it', async () => {
    const missing = Object.assign(new Error("Cannot find package 'amqplib'"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    const failure = await importAdapter(() => Promise.reject(missing), 'amqplib').catch(
      (error: unknown) => error,
    );
    expect(failure).toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE', details: { packages: 'amqplib' } });
    expect((failure as Error).message).toContain('npm install amqplib');
    const other = new Error('a bug in the adapter');
    await expect(importAdapter(() => Promise.reject(other), 'amqplib')).rejects.toBe(other);
  });
});
