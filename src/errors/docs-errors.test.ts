import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { errorCodes } from './codes.ts';

describe('docs/errors.md', () => {
  it('lists exactly the codes in the table, each with its status', async () => {
    const text = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Map<string, number>();
    for (const match of text.matchAll(/^\|\s*`(KEEL_[A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|/gm)) {
      documented.set(match[1]!, Number(match[2]));
    }
    const actual = new Map(Object.entries(errorCodes).map(([code, entry]) => [code, entry.status as number]));
    expect([...documented.keys()].sort()).toEqual([...actual.keys()].sort());
    for (const [code, status] of actual) expect(documented.get(code), code).toBe(status);
  });
});
