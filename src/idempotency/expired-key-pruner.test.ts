import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { ExpiredKeyPruner } from './expired-key-pruner.ts';

describe('ExpiredKeyPruner', () => {
  it('prunes every interval while running, survives a failing pass, and stops', async () => {
    const clock = new ManualClock();
    let calls = 0;
    const store = {
      prune: async () => {
        calls++;
        if (calls === 2) throw new Error('database restarting');
        return 3;
      },
    };
    const pruner = new ExpiredKeyPruner(store, { intervalMs: 1_000, clock });
    const pruned: number[] = [];
    const errors: unknown[] = [];
    pruner.events.on('pruned', ({ deleted }) => pruned.push(deleted));
    pruner.events.on('error', ({ error }) => errors.push(error));
    await pruner.start();
    await clock.advance(999);
    expect(calls).toBe(0);
    await clock.advance(1);
    await clock.advance(1_000);
    await clock.advance(1_000);
    expect(calls).toBe(3);
    expect(pruned).toEqual([3, 3]);
    expect(errors).toHaveLength(1);
    await pruner.stop();
    await clock.advance(10_000);
    expect(calls).toBe(3);
  });

  it('rejects a bad interval by name', () => {
    expect(() => new ExpiredKeyPruner({ prune: async () => 0 }, { intervalMs: 0 })).toThrow(/intervalMs/);
  });
});
