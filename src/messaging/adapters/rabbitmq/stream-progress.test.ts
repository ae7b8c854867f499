import { describe, expect, it } from 'vitest';
import { StreamProgress } from './stream-progress.ts';

interface D {
  offset: number;
  attempt: number;
}

function reader(...offsets: number[]): { progress: StreamProgress<D>; ds: D[] } {
  const progress = new StreamProgress<D>();
  const ds = offsets.map((offset) => ({ offset, attempt: 1 }));
  for (const d of ds) progress.add(d.offset, d);
  return { progress, ds };
}

describe('StreamProgress', () => {
  it('hands messages out in offset order, each once, up to max', () => {
    const { progress, ds } = reader(10, 11, 12);
    expect(progress.claim(0, 2)).toEqual([ds[0], ds[1]]);
    expect(progress.claim(0, 5)).toEqual([ds[2]]);
    expect(progress.claim(0, 5)).toEqual([]);
  });

  it('commits only to the end of the handled prefix: a slow message holds the point, not the others', () => {
    const { progress, ds } = reader(10, 11, 12, 13);
    progress.claim(0, 4);
    expect(progress.done(ds[1]!)).toBe(true);
    expect(progress.done(ds[2]!)).toBe(true);
    expect(progress.takeHandledPrefix()).toBeUndefined();
    progress.done(ds[0]!);
    expect(progress.takeHandledPrefix()).toBe(12);
    expect(progress.size).toBe(1);
    expect(progress.takeHandledPrefix()).toBeUndefined();
    progress.done(ds[3]!);
    expect(progress.takeHandledPrefix()).toBe(13);
    expect(progress.size).toBe(0);
  });

  it('a retry waits for its backoff as its next attempt and holds the commit point meanwhile', () => {
    const { progress, ds } = reader(1, 2);
    progress.claim(0, 2);
    const again = { offset: 1, attempt: 2 };
    progress.retryAt(ds[0]!, again, 1000);
    progress.done(ds[1]!);
    expect(progress.holds(ds[0]!)).toBe(false);
    expect(progress.holds(again)).toBe(true);
    expect(progress.claim(999, 5)).toEqual([]);
    expect(progress.takeHandledPrefix()).toBeUndefined();
    expect(progress.claim(1000, 5)).toEqual([again]);
    // The first copy's settle is refused: the reader holds the next attempt now.
    expect(progress.done(ds[0]!)).toBe(false);
    progress.done(again);
    expect(progress.takeHandledPrefix()).toBe(2);
  });

  it('a held (parked) message is never handed out and holds the commit point until done', () => {
    const { progress, ds } = reader(1);
    const parked = progress.hold(2);
    progress.add(3, { offset: 3, attempt: 1 });
    const claimed = progress.claim(0, 5);
    expect(claimed.map((d) => d.offset)).toEqual([1, 3]);
    for (const d of claimed) progress.done(d);
    expect(progress.takeHandledPrefix()).toBe(1);
    parked();
    expect(progress.takeHandledPrefix()).toBe(3);
    expect(progress.holds(ds[0]!)).toBe(false);
  });

  it('clear forgets everything: nothing to hand out, settle or commit', () => {
    const { progress, ds } = reader(1, 2);
    progress.claim(0, 1);
    progress.clear();
    expect(progress.claim(0, 5)).toEqual([]);
    expect(progress.done(ds[0]!)).toBe(false);
    expect(progress.takeHandledPrefix()).toBeUndefined();
  });
});
