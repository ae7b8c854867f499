import { describe, expect, it } from 'vitest';
import { brokerConfigFromEnv } from './broker-config.ts';

describe('brokerConfigFromEnv', () => {
  it("defaults to keel's queue in the shop's database, and to each broker's local server", () => {
    expect(brokerConfigFromEnv({})).toEqual({ kind: 'postgres', url: '' });
    expect(brokerConfigFromEnv({ KEEL_BROKER: 'rabbitmq' })).toEqual({
      kind: 'rabbitmq',
      url: 'amqp://guest:guest@127.0.0.1:5672',
    });
    expect(brokerConfigFromEnv({ KEEL_BROKER: 'kafka', KEEL_BROKER_URL: 'k1:9092,k2:9092' })).toEqual({
      kind: 'kafka',
      url: 'k1:9092,k2:9092',
    });
    expect(brokerConfigFromEnv({ KEEL_BROKER: 'nats', KEEL_BROKER_PREFIX: 'staging.' })).toEqual({
      kind: 'nats',
      url: '127.0.0.1:4222',
      prefix: 'staging.',
    });
    expect(brokerConfigFromEnv({ KEEL_BROKER: 'redis' })).toMatchObject({ url: 'redis://127.0.0.1:6379' });
  });

  it('refuses an unknown broker or a URL of the wrong shape, naming the variable', () => {
    expect(() => brokerConfigFromEnv({ KEEL_BROKER: 'sqs' })).toThrow(/KEEL_BROKER.*postgres, rabbitmq/);
    expect(() => brokerConfigFromEnv({ KEEL_BROKER: 'rabbitmq', KEEL_BROKER_URL: 'localhost:5672' })).toThrow(
      /KEEL_BROKER_URL/,
    );
    expect(() => brokerConfigFromEnv({ KEEL_BROKER: 'kafka', KEEL_BROKER_URL: 'kafka://k:9092' })).toThrow(
      /KEEL_BROKER_URL/,
    );
    expect(() => brokerConfigFromEnv({ KEEL_BROKER: 'redis', KEEL_BROKER_URL: '127.0.0.1:6379' })).toThrow(
      /KEEL_BROKER_URL/,
    );
  });
});
