import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import type { BeginRequest } from './idempotency-store.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';

const request = (key: string, ttlMs = 60_000): BeginRequest => ({
  scope: 'tenant POST /charges',
  key,
  fingerprint: 'f',
  lockMs: 5_000,
  ttlMs,
});

describe('MemoryIdempotencyStore', () => {
  it('forgets expired keys as new ones arrive: a long-running process does not grow without bound', async () => {
    const clock = new ManualClock();
    const store = new MemoryIdempotencyStore({ clock });
    for (let i = 0; i < 1_000; i++) {
      const started = await store.begin(request(`k-${i}`));
      if (started.kind !== 'started') throw new Error('expected started');
      if (i % 2 === 0)
        await store.complete('tenant POST /charges', `k-${i}`, started.token, {
          status: 201,
          headers: {},
          body: '{}',
        });
    }
    expect(store.size).toBe(1_000);
    await clock.advance(59_999);
    await store.begin(request('fresh-1'));
    expect(store.size).toBe(1_001);
    await clock.advance(1);
    await store.begin(request('fresh-2'));
    expect(store.size).toBe(2);
  });
});
