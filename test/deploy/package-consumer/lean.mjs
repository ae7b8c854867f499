// A project that installed keel's package alone (`npm install keel`): its dependencies and none of
// its optional peers. The package test runs this file there, with DATABASE_URL set, and checks
// what it prints: which subpaths load, what a missing peer says, and the outbox on a server.
import { readFile } from 'node:fs/promises';

const manifest = JSON.parse(
  await readFile(new URL('./node_modules/keel/package.json', import.meta.url), 'utf8'),
);
for (const subpath of Object.keys(manifest.exports)) {
  const specifier = `keel${subpath.slice(1)}`;
  const outcome = await import(specifier).then(
    () => 'loads',
    (error) => `needs ${/Cannot find package '([^']+)'/.exec(error.message)?.[1] ?? error.message}`,
  );
  console.log(`${specifier}: ${outcome}`);
}

const { openPgliteDb, openPgDb, migrate } = await import('keel/db');
await openPgliteDb().then(
  () => console.log('openPgliteDb: opened'),
  (error) => console.log(`openPgliteDb: ${error.code} (${error.details.package})`),
);

const { retry } = await import('keel/resilience');
let calls = 0;
const answer = await retry({ maxAttempts: 3 }).execute(async () => {
  if (++calls < 2) throw new Error('503');
  return 42;
}, undefined);
console.log(`retry: ${answer} after ${calls} calls`);

const { addToOutbox, OutboxRelay, outboxMigrations } = await import('keel/outbox');
const { createEnvelope } = await import('keel/messaging');
const schema = `keel_package_${process.pid}`;
const db = await openPgDb({ url: process.env.DATABASE_URL, schema });
try {
  await migrate(db, outboxMigrations);
  await db.transaction((tx) =>
    addToOutbox(
      tx,
      'orders',
      createEnvelope({ type: 'order.placed.v1', payload: { id: 'o-1' }, key: 'o-1' }),
    ),
  );
  const published = [];
  await new OutboxRelay(db, {
    publish: async (to, messages) => void published.push(...messages.map((m) => `${to} ${m.type}`)),
  }).relayOnce();
  console.log(`outbox on PostgreSQL: ${published.join(', ')}`);
} finally {
  await db.query(`DROP SCHEMA ${schema} CASCADE`);
  await db.close();
}
