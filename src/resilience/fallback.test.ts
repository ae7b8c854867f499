import { describe, expect, it } from 'vitest';
import { fallback } from './fallback.ts';

describe('fallback', () => {
  it('answers with the substitute when the work fails, and passes results through', async () => {
    const policy = fallback({ fallback: ({ error }) => `cached (${(error as Error).message})` });
    await expect(policy.execute(() => Promise.reject(new Error('down')))).resolves.toBe('cached (down)');
    await expect(policy.execute(() => 'fresh')).resolves.toBe('fresh');
  });

  it('replaces only handled errors and results', async () => {
    const policy = fallback({
      fallback: () => 'default',
      handle: (e) => (e as Error).message === 'down',
      handleResult: (r) => r === null,
    });
    await expect(policy.execute(() => Promise.reject(new Error('bug')))).rejects.toThrow('bug');
    await expect(policy.execute(() => null)).resolves.toBe('default');
  });

  it('does not answer a caller that aborted', async () => {
    const controller = new AbortController();
    const policy = fallback({ fallback: () => 'default' });
    const result = policy.execute(async () => {
      controller.abort();
      throw new Error('aborted');
    }, controller.signal);
    await expect(result).rejects.toThrow('aborted');
  });

  it('emits a fallback event', async () => {
    const policy = fallback({ fallback: () => 0 });
    const seen: unknown[] = [];
    policy.on('fallback', (e) => seen.push((e.error as Error).message));
    await policy.execute(() => Promise.reject(new Error('x')));
    expect(seen).toEqual(['x']);
  });

  it('rejects a missing fallback naming it', () => {
    expect(() => fallback({} as never)).toThrow(/fallback: expected a function/);
  });
});
