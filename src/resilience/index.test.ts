import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import * as resilience from './index.ts';

describe('keel/resilience public door', () => {
  it('exports the policy factories and their error classes', () => {
    for (const name of [
      'retry',
      'circuitBreaker',
      'timeout',
      'bulkhead',
      'fallback',
      'hedge',
      'rateLimiter',
      'pipeline',
      'retryBudget',
    ]) {
      expect(typeof (resilience as Record<string, unknown>)[name], name).toBe('function');
    }
    for (const name of [
      'BrokenCircuitError',
      'IsolatedCircuitError',
      'BulkheadRejectedError',
      'TimeoutError',
      'RateLimitedError',
    ]) {
      expect(typeof (resilience as Record<string, unknown>)[name], name).toBe('function');
    }
  });

  it('imports no driver at runtime: the Redis and PostgreSQL stores take the client they are given', async () => {
    const dir = new URL('.', import.meta.url);
    const files = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    for (const file of files) {
      const source = await readFile(new URL(file, dir), 'utf8');
      const runtimeImports = [...source.matchAll(/^import (?!type )[^;]*? from '([^']+)'/gms)].map(
        (m) => m[1]!,
      );
      const external = runtimeImports.filter((spec) => !spec.startsWith('.') && !spec.startsWith('node:'));
      expect(external, file).toEqual([]);
    }
  });
});
