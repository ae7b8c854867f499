import { describe, expect, it } from 'vitest';
import { KeelError } from '../errors/index.ts';
import { ManualClock } from '../time/index.ts';
import { createIdempotent, deriveIdempotencyKey } from './idempotent.ts';
import { MemoryIdempotencyStore } from './memory-idempotency-store.ts';

function setup(options: { waitMs?: number } = {}) {
  const clock = new ManualClock();
  const store = new MemoryIdempotencyStore({ clock });
  const replays: string[] = [];
  const idempotent = createIdempotent({
    store,
    scope: 'payments.charge',
    clock,
    lockMs: 1_000,
    ttlMs: 10_000,
    onReplay: (key) => replays.push(key),
    ...options,
  });
  return { clock, store, idempotent, replays };
}

describe('idempotent(key, fn)', () => {
  it('runs fn once per key and replays its result, handing the key to fn', async () => {
    const { idempotent, replays } = setup();
    const seen: string[] = [];
    const charge = (key: string) =>
      idempotent(key, async (ctx) => {
        seen.push(ctx.key);
        return { chargeId: `ch_${seen.length}`, amount: 5 };
      });
    expect(await charge('order-1')).toEqual({ chargeId: 'ch_1', amount: 5 });
    expect(await charge('order-1')).toEqual({ chargeId: 'ch_1', amount: 5 });
    expect(await charge('order-2')).toEqual({ chargeId: 'ch_2', amount: 5 });
    expect(seen).toEqual(['order-1', 'order-2']);
    expect(replays).toEqual(['order-1']);
  });

  it('replays an undefined result as undefined', async () => {
    const { idempotent } = setup();
    let runs = 0;
    const once = () => idempotent('k', async () => void runs++);
    expect(await once()).toBeUndefined();
    expect(await once()).toBeUndefined();
    expect(runs).toBe(1);
  });

  it('releases the key when fn throws, so a retry runs again', async () => {
    const { idempotent } = setup();
    let runs = 0;
    const flaky = () =>
      idempotent('k', async () => {
        runs++;
        if (runs === 1) throw new Error('provider down');
        return 'ok';
      });
    await expect(flaky()).rejects.toThrow('provider down');
    expect(await flaky()).toBe('ok');
    expect(runs).toBe(2);
  });

  it('fails a concurrent call with KEEL_IDEMPOTENCY_IN_FLIGHT; with waitMs it waits for the result', async () => {
    const { idempotent, clock } = setup();
    let finish!: (value: string) => void;
    const first = idempotent('k', () => new Promise<string>((resolve) => (finish = resolve)));
    await clock.advance(0);
    const error = await idempotent('k', async () => 'second').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KeelError);
    expect((error as KeelError).code).toBe('KEEL_IDEMPOTENCY_IN_FLIGHT');

    finish('first');
    expect(await first).toBe('first');
  });

  it('with waitMs, a concurrent call gets the first call result once it is stored', async () => {
    const { idempotent, clock } = setup({ waitMs: 500 });
    let finish!: (value: string) => void;
    const first = idempotent('k', () => new Promise<string>((resolve) => (finish = resolve)));
    await clock.advance(0);
    let secondRan = false;
    const second = idempotent('k', async () => {
      secondRan = true;
      return 'second';
    });
    await clock.advance(120);
    finish('first');
    await first;
    await clock.advance(60);
    expect(await second).toBe('first');
    expect(secondRan).toBe(false);
  });

  it('refuses a key reused with another fingerprint', async () => {
    const { idempotent } = setup();
    await idempotent('k', async () => 1, { fingerprint: 'amount=5' });
    await expect(idempotent('k', async () => 2, { fingerprint: 'amount=6' })).rejects.toMatchObject({
      code: 'KEEL_IDEMPOTENCY_KEY_REUSED',
    });
  });

  it('rejects bad input by name', () => {
    const store = new MemoryIdempotencyStore();
    expect(() => createIdempotent({ store, scope: '' })).toThrow(/scope/);
    expect(() => createIdempotent({ store, scope: 's', lockMs: 0 })).toThrow(/lockMs/);
    const idempotent = createIdempotent({ store, scope: 's' });
    return expect(idempotent('', async () => 1)).rejects.toThrow(/key/);
  });
});

describe('deriveIdempotencyKey', () => {
  it('is stable, short, and never joins parts ambiguously', () => {
    expect(deriveIdempotencyKey('saga-1', 'charge')).toBe(deriveIdempotencyKey('saga-1', 'charge'));
    expect(deriveIdempotencyKey('ab', 'c')).not.toBe(deriveIdempotencyKey('a', 'bc'));
    expect(deriveIdempotencyKey('x'.repeat(10_000)).length).toBeLessThanOrEqual(64);
  });
});
