import { describe, expect, it } from 'vitest';
import type { BeginRequest, IdempotencyStore, StoredResponse } from '../idempotency/idempotency-store.ts';
import { ManualClock } from '../time/index.ts';

export interface IdempotencyStoreTarget {
  /** Shown in the suite's name. */
  name: string;
  /** A store isolated from every other test (its own key prefix or schema), on this clock. */
  create: (clock: ManualClock) => Promise<IdempotencyStore>;
  destroy?: (store: IdempotencyStore) => Promise<void>;
  /** Set when the backing server is missing: every scenario is skipped, stating this reason. */
  skip?: string;
}

const response: StoredResponse = {
  status: 201,
  headers: { 'content-type': 'application/json; charset=utf-8', location: '/charges/1' },
  body: '{"id":1,"note":"ünïcode ✓"}',
};

function request(overrides: Partial<BeginRequest> = {}): BeginRequest {
  return {
    scope: 'tenant-a POST /charges',
    key: 'k-1',
    fingerprint: 'f-1',
    lockMs: 5_000,
    ttlMs: 60_000,
    ...overrides,
  };
}

/**
 * The one suite every `IdempotencyStore` passes: one winner per key, replay of exactly what was
 * stored, refusal of a reused key, tokens that fence a taken-over holder, and expiry of locks
 * and keys on the injected clock.
 */
export function idempotencyStoreConformance(target: IdempotencyStoreTarget): void {
  const title = `IdempotencyStore conformance: ${target.name}${target.skip ? ` (skipped: ${target.skip})` : ''}`;
  describe.skipIf(target.skip !== undefined)(title, () => {
    async function withStore(
      fn: (store: IdempotencyStore, clock: ManualClock) => Promise<void>,
    ): Promise<void> {
      const clock = new ManualClock();
      const store = await target.create(clock);
      try {
        await fn(store, clock);
      } finally {
        await target.destroy?.(store);
      }
    }

    it('starts a new key once; the same request meanwhile is in flight, another one a mismatch', () =>
      withStore(async (store) => {
        expect((await store.begin(request())).kind).toBe('started');
        expect(await store.begin(request())).toEqual({ kind: 'in-flight' });
        expect(await store.begin(request({ fingerprint: 'f-2' }))).toEqual({ kind: 'mismatch' });
      }));

    it('replays exactly the stored response (status, headers, body)', () =>
      withStore(async (store) => {
        const started = await store.begin(request());
        if (started.kind !== 'started') throw new Error(`expected started, got ${started.kind}`);
        await store.complete('tenant-a POST /charges', 'k-1', started.token, response);
        expect(await store.begin(request())).toEqual({ kind: 'replay', response });
        expect(await store.begin(request({ fingerprint: 'f-2' }))).toEqual({ kind: 'mismatch' });
      }));

    it('keeps scopes apart: one key in two scopes is two keys', () =>
      withStore(async (store) => {
        expect((await store.begin(request())).kind).toBe('started');
        expect((await store.begin(request({ scope: 'tenant-b POST /charges' }))).kind).toBe('started');
        expect((await store.begin(request({ scope: 'tenant-a POST /refunds' }))).kind).toBe('started');
      }));

    it('release frees a started key for a retry; a wrong token or a completed key is left alone', () =>
      withStore(async (store) => {
        const first = await store.begin(request());
        if (first.kind !== 'started') throw new Error('expected started');
        await store.release('tenant-a POST /charges', 'k-1', 'not-the-token');
        expect((await store.begin(request())).kind).toBe('in-flight');
        await store.release('tenant-a POST /charges', 'k-1', first.token);
        const second = await store.begin(request());
        if (second.kind !== 'started') throw new Error('expected started after release');
        await store.complete('tenant-a POST /charges', 'k-1', second.token, response);
        await store.release('tenant-a POST /charges', 'k-1', second.token);
        expect((await store.begin(request())).kind).toBe('replay');
      }));

    it("a holder whose lock ran out is taken over, and its late complete cannot overwrite the successor's", () =>
      withStore(async (store, clock) => {
        const crashed = await store.begin(request());
        if (crashed.kind !== 'started') throw new Error('expected started');
        await clock.advance(4_999);
        expect((await store.begin(request())).kind).toBe('in-flight');
        await clock.advance(1);
        // A different request does not take over the key: it was reserved for the first one.
        expect((await store.begin(request({ fingerprint: 'f-2' }))).kind).toBe('mismatch');
        const successor = await store.begin(request());
        if (successor.kind !== 'started') throw new Error('expected a takeover');
        await store.complete('tenant-a POST /charges', 'k-1', crashed.token, { ...response, body: 'stale' });
        await store.release('tenant-a POST /charges', 'k-1', crashed.token);
        expect((await store.begin(request())).kind).toBe('in-flight');
        await store.complete('tenant-a POST /charges', 'k-1', successor.token, response);
        expect(await store.begin(request())).toEqual({ kind: 'replay', response });
      }));

    it('forgets a completed key after its ttl: the same key then starts anew, for any request', () =>
      withStore(async (store, clock) => {
        const started = await store.begin(request());
        if (started.kind !== 'started') throw new Error('expected started');
        await store.complete('tenant-a POST /charges', 'k-1', started.token, response);
        await clock.advance(59_999);
        expect((await store.begin(request())).kind).toBe('replay');
        await clock.advance(1);
        expect((await store.begin(request({ fingerprint: 'f-2' }))).kind).toBe('started');
      }));

    it('of 25 concurrent begins with one key, exactly one starts', () =>
      withStore(async (store) => {
        const outcomes = await Promise.all(Array.from({ length: 25 }, () => store.begin(request())));
        expect(outcomes.filter((o) => o.kind === 'started')).toHaveLength(1);
        expect(outcomes.filter((o) => o.kind === 'in-flight')).toHaveLength(24);
      }));
  });
}
