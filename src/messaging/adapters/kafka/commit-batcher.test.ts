import { describe, expect, it } from 'vitest';
import { CommitBatcher } from './commit-batcher.ts';

describe('CommitBatcher', () => {
  it('runs once at a time and folds requests made during a run into one follow-up', async () => {
    const releases: (() => void)[] = [];
    let runs = 0;
    const batcher = new CommitBatcher(
      () =>
        new Promise<void>((resolve) => {
          runs++;
          releases.push(resolve);
        }),
    );
    const first = batcher.request();
    const second = batcher.request();
    const third = batcher.request();
    expect(second).toBe(third);
    expect(runs).toBe(1);
    releases.shift()!();
    await first;
    await Promise.resolve();
    expect(runs).toBe(2);
    releases.shift()!();
    await second;
    expect(runs).toBe(2);
  });

  it('a failed run rejects its callers but not the follow-up', async () => {
    let fail = true;
    const batcher = new CommitBatcher(async () => {
      if (fail) {
        fail = false;
        throw new Error('stale generation');
      }
    });
    const first = batcher.request();
    const second = batcher.request();
    await expect(first).rejects.toThrow('stale generation');
    await expect(second).resolves.toBeUndefined();
  });
});
