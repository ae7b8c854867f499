import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { resolveConnectionOptions } from './connection-options.ts';
import { RabbitMqBroker } from './rabbitmq-broker.ts';
import { RabbitMqStreamBroker } from './rabbitmq-stream-broker.ts';

describe('RabbitMQ connection options', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('default to the local server (or KEEL_RABBITMQ_URL), 5 s to connect, 30 s for confirms, a 10 s heartbeat', () => {
    vi.stubEnv('KEEL_RABBITMQ_URL', undefined);
    const resolved = resolveConnectionOptions({});
    expect(resolved).toMatchObject({
      url: 'amqp://guest:guest@127.0.0.1:5672',
      connectTimeoutMs: 5000,
      confirmTimeoutMs: 30_000,
      heartbeatSeconds: 10,
      name: 'keel',
    });
    vi.stubEnv('KEEL_RABBITMQ_URL', 'amqps://broker.example:5671');
    expect(resolveConnectionOptions({}).url).toBe('amqps://broker.example:5671');
    const clock = new ManualClock();
    expect(resolveConnectionOptions({ clock, heartbeatSeconds: 0 })).toMatchObject({
      clock,
      heartbeatSeconds: 0,
    });
  });

  it.each([
    ['url', { url: 'http://127.0.0.1:5672' }],
    ['connectTimeoutMs', { connectTimeoutMs: 0 }],
    ['connectTimeoutMs', { connectTimeoutMs: Number.NaN }],
    ['confirmTimeoutMs', { confirmTimeoutMs: -1 }],
    ['heartbeatSeconds', { heartbeatSeconds: 1.5 }],
    ['heartbeatSeconds', { heartbeatSeconds: -1 }],
  ])('refuse a bad %s by name, in both brokers', (field, options) => {
    for (const make of [
      () => resolveConnectionOptions(options),
      () => new RabbitMqBroker(options),
      () => new RabbitMqStreamBroker(options),
    ]) {
      let thrown: unknown;
      try {
        make();
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(InvalidArgumentError);
      expect((thrown as InvalidArgumentError).field).toBe(field);
    }
  });
});
