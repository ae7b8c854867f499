import { describe, expect, it } from 'vitest';
import { shopConfigFromEnv } from './config.ts';

describe('shopConfigFromEnv: the worker and the relay', () => {
  it('reads their defaults when nothing is set', () => {
    const config = shopConfigFromEnv({});
    expect(config.worker).toEqual({ concurrency: 8, leaseMs: 30_000, pollIntervalMs: 1000 });
    expect(config.relay).toEqual({ pollIntervalMs: 1000, batchSize: 100, claimMs: 30_000 });
  });

  it('reads KEEL_RELAY_CLAIM_MS: how long a relay holds what it took, so how soon a dead one is taken over', () => {
    expect(shopConfigFromEnv({ KEEL_RELAY_CLAIM_MS: '2000' }).relay.claimMs).toBe(2000);
    expect(() => shopConfigFromEnv({ KEEL_RELAY_CLAIM_MS: '50' })).toThrow(/KEEL_RELAY_CLAIM_MS/);
    expect(() => shopConfigFromEnv({ KEEL_RELAY_CLAIM_MS: 'soon' })).toThrow(/KEEL_RELAY_CLAIM_MS/);
  });

  it('names a bad worker or relay setting', () => {
    expect(() => shopConfigFromEnv({ KEEL_WORKER_LEASE_MS: '10' })).toThrow(/KEEL_WORKER_LEASE_MS/);
    expect(() => shopConfigFromEnv({ KEEL_RELAY_BATCH_SIZE: '0' })).toThrow(/KEEL_RELAY_BATCH_SIZE/);
  });
});
