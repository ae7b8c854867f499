// A project that installed keel from its npm package and runs it with node alone: no TypeScript,
// no tsx. The package test copies this file into such a project and checks what it prints.
import { readFile } from 'node:fs/promises';
import { migrate, openPgliteDb } from 'keel/db';
import { KeelError } from 'keel/errors';
import { createEnvelope } from 'keel/messaging';
import { HybridLogicalClock } from 'keel/ordering';
import { OutboxRelay, addToOutbox, outboxMigrations } from 'keel/outbox';
import { retry } from 'keel/resilience';
import { exponentialBackoff } from 'keel/time';

const manifest = JSON.parse(
  await readFile(new URL('./node_modules/keel/package.json', import.meta.url), 'utf8'),
);
const subpaths = Object.keys(manifest.exports);
for (const subpath of subpaths) await import(`keel${subpath.slice(1)}`);
console.log(`loaded ${subpaths.length} subpaths`);

let calls = 0;
const policy = retry({ maxAttempts: 3, backoff: exponentialBackoff({ initialMs: 1, jitter: 'none' }) });
const answer = await policy.execute(async () => {
  calls++;
  if (calls < 3) throw new Error('503 from inventory');
  return 42;
});
console.log(`retry: ${answer} after ${calls} calls`);

const db = await openPgliteDb();
try {
  await migrate(db, [
    ...outboxMigrations,
    { id: '0001_orders', sql: 'CREATE TABLE orders (id text PRIMARY KEY, cents int NOT NULL)' },
  ]);
  const hlc = new HybridLogicalClock({ node: 'consumer' });
  await db.transaction(async (tx) => {
    await tx.query('INSERT INTO orders (id, cents) VALUES ($1, $2)', ['o-1', 1200]);
    await addToOutbox(
      tx,
      'orders',
      createEnvelope({ type: 'order.placed.v1', payload: { id: 'o-1' }, key: 'o-1' }, undefined, hlc),
    );
  });
  const published = [];
  const relay = new OutboxRelay(db, {
    publish: async (destination, messages) =>
      void published.push(...messages.map((m) => `${destination} ${m.type} ${m.key}`)),
  });
  await relay.relayOnce();
  console.log(`outbox: ${published.join(', ')}`);
} finally {
  await db.close();
}

try {
  await addToOutbox(undefined, 'orders', []);
} catch (error) {
  console.log(`bad input: ${error instanceof KeelError ? error.code : 'not a KeelError'}`);
}
