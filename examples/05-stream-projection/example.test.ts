import { expect, it } from 'vitest';
import { createTestDb } from 'keel/testing';
import { runExample } from './main.ts';

it('examples/05-stream-projection: the model counts a duplicated event once, a rebuild gives it back, and after a trim replays what is left', async () => {
  await using db = await createTestDb();
  const lines: string[] = [];
  await runExample({ db, log: (line) => lines.push(line) });
  expect(lines).toEqual([
    'relay appended 3 events to the stream',
    'stream positions: 1, 2, 3, 4',
    'applied 4 entries up to position 4: ada 2 order(s) 1299 cents, bob 1 order(s) 350 cents',
    'rebuilt from position 0, applied 4 entries: ada 2 order(s) 1299 cents, bob 1 order(s) 350 cents',
    'trimmed 3 entries; the stream holds positions 4 to 4',
    'rebuilt from position 3, applied 1 entries: ada 1 order(s) 1200 cents',
  ]);
});
