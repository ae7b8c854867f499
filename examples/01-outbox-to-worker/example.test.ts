import { expect, it } from 'vitest';
import { createTestDb } from 'keel/testing';
import { runExample } from './main.ts';

it('examples/01-outbox-to-worker books each payment once despite a duplicate delivery', async () => {
  await using db = await createTestDb();
  const lines: string[] = [];
  await runExample({ db, log: (line) => lines.push(line) });
  expect(lines.slice(0, 3)).toEqual([
    'committed 2 payments and their events',
    'relay published 2 events',
    'queue holds 3 messages (one is a duplicate)',
  ]);
  // Per-key order: p-1's duplicate is handled after p-1 itself, whatever else interleaves.
  expect(lines.slice(3, 6).sort()).toEqual([
    'p-1: booked 1200 cents',
    'p-1: duplicate, skipped',
    'p-2: booked 350 cents',
  ]);
  expect(lines.indexOf('p-1: booked 1200 cents')).toBeLessThan(lines.indexOf('p-1: duplicate, skipped'));
  expect(lines.at(-1)).toBe('ledger: 2 entries, 1550 cents');
});
