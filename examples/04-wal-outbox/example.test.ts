import { expect, it } from 'vitest';
import { runExample } from './main.ts';

it('examples/04-wal-outbox: committed events stream from the WAL in commit order, a rolled-back one never', async () => {
  const lines: string[] = [];
  // No URL: the example starts a throwaway wal_level=logical server of its own.
  await runExample({ log: (line) => lines.push(line) });
  expect(lines).toEqual([
    'slot example_04 ready',
    'order o-1 and its event committed in one transaction',
    'o-2 rolled back (payment declined), no event',
    'order o-3 and its event committed in one transaction',
    'published to orders: order.placed.v1 {"id":"o-1","cents":1200}',
    'published to orders: order.placed.v1 {"id":"o-3","cents":350}',
    'relay published 2 events',
  ]);
});
