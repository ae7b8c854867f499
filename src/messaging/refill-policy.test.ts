import { describe, expect, it } from 'vitest';
import { claimSize, lowWaterMark } from './refill-policy.ts';

describe('refill policy', () => {
  it('low-water mark: min(a quarter of the window, half the prefetch), rounded up, at least 1', () => {
    expect(lowWaterMark(64, 256)).toBe(80);
    expect(lowWaterMark(1, 16)).toBe(5);
    expect(lowWaterMark(8, 2)).toBe(1);
    expect(lowWaterMark(4, 0)).toBe(1);
  });

  const window = { concurrency: 64, prefetch: 256, lowWater: 80 };

  it('never claims past the room left, counting messages whose ack is in flight', () => {
    expect(claimSize({ ...window, held: 320, running: 0, buffered: 0 })).toBe(0);
    expect(claimSize({ ...window, held: 0, running: 0, buffered: 0 })).toBe(320);
  });

  it('fills a handler slot that would wait, however small the claim', () => {
    expect(claimSize({ ...window, held: 318, running: 63, buffered: 0 })).toBe(2);
  });

  it('while every slot has work, waits until the buffer is half empty and the room reaches the low-water mark', () => {
    expect(claimSize({ ...window, held: 64 + 129, running: 64, buffered: 129 })).toBe(0);
    expect(claimSize({ ...window, held: 64 + 128 + 60, running: 64, buffered: 128 })).toBe(0);
    expect(claimSize({ ...window, held: 64 + 128 + 48, running: 64, buffered: 128 })).toBe(80);
  });
});
