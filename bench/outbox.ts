// bench/outbox: keel's outbox relay beside a hand-rolled outbox poller, moving committed rows to
// keel's PostgreSQL queue on the same server.
//
// Method: one process, one PostgreSQL; each measurement in a fresh schema holding that
// contender's outbox table and the queue's tables, dropped after.
// (a) Throughput: commit N rows (10 per business transaction, 1 000 keys) with no relay running,
//     then start the relay(s) and time until the contender's table shows no unpublished row.
//     Both publish through the same PgQueue.publish (a committed INSERT into the queue table)
//     before marking, so both are at-least-once with the same durability. Rounds interleaved,
//     contender order rotating; the best round is reported, the median beside it.
// (b) Latency: one row per transaction at a steady rate, relay(s) running; from just before the
//     business transaction to the moment the queue confirmed the publish, p50 / p99.
// The WAL outbox (keel WAL: a logical message instead of a row, streamed from a replication slot)
// runs beside them when the server has wal_level=logical. The shared server here does not:
// BENCH_OUTBOX_SERVER=own starts one (startPgServer: PostgreSQL 15, fsync and synchronous_commit
// on, the same disk) and runs every contender on it.
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { defaultDatabaseUrl, migrate, openDb, type Db } from '../src/db/index.ts';
import { createEnvelope, PgQueue, pgQueueMigrations, type Envelope } from '../src/messaging/index.ts';
import type { Contender, Instance, Publish } from './outbox/contender.ts';
import { handRolledContender } from './outbox/hand-rolled.ts';
import { destination, keelContender } from './outbox/keel.ts';
import { keelWalContender } from './outbox/keel-wal.ts';
import { startPgServer, type PgServer } from '../src/testing/index.ts';

/** The server every contender runs on: DATABASE_URL's, or with BENCH_OUTBOX_SERVER=own one the bench starts. */
let url = process.env.DATABASE_URL ?? defaultDatabaseUrl;
let ownServer: PgServer | undefined;
const rows = Number(process.env.BENCH_OUTBOX_ROWS ?? 10_000);
const rounds = Number(process.env.BENCH_OUTBOX_ROUNDS ?? 3);
const rate = Number(process.env.BENCH_OUTBOX_RATE ?? 500);
const seconds = Number(process.env.BENCH_OUTBOX_SECONDS ?? 5);
const batchSize = 100;
const pollMs = 100;
const perTx = 10;
/** Distinct ordering keys: aggregate ids, such as order ids, give many. */
const keys = Number(process.env.BENCH_OUTBOX_KEYS ?? 1000);
const relayCounts = [1, 2];

const contenders: Contender[] = [keelContender(batchSize), handRolledContender(batchSize, pollMs)];

async function walLevel(): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<{ wal_level: string }>('SHOW wal_level')).rows[0]?.wal_level ?? 'unknown';
  } finally {
    await client.end();
  }
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

let counter = 0;
const message = (): Envelope =>
  createEnvelope({
    type: 'order.placed.v1',
    payload: { orderId: `o-${counter}`, cents: counter % 10_000 },
    key: `k${counter++ % keys}`,
  });

/** Runs `body` in a fresh schema with the queue's tables; the queue's Db publishes for the contender. */
async function inFreshSchema<T>(
  contender: Contender,
  onPublished: (messages: readonly Envelope[]) => void,
  body: (instance: Instance, queueDb: Db) => Promise<T>,
): Promise<T> {
  const schema = `bench_outbox_${contender.name.replace(/[^a-z]/g, '_')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.query(`CREATE SCHEMA ${schema}`);
    const queueDb = await openDb({ kind: 'pg', url, schema, poolSize: 4 });
    await migrate(queueDb, pgQueueMigrations);
    const queue = new PgQueue(queueDb);
    const publish: Publish = async (d, messages) => {
      await queue.publish(d, messages);
      onPublished(messages);
    };
    const instance = await contender.open(schema, url, publish);
    try {
      return await body(instance, queueDb);
    } finally {
      await instance.close();
      await queueDb.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

interface Throughput {
  fillMs: number;
  drainMs: number;
  received: number;
}

async function throughput(contender: Contender, relays: number): Promise<Throughput> {
  return inFreshSchema(
    contender,
    () => undefined,
    async (instance, queueDb) => {
      const fillStart = performance.now();
      for (let done = 0; done < rows; done += perTx) {
        await instance.commit(Array.from({ length: Math.min(perTx, rows - done) }, message));
      }
      const fillMs = performance.now() - fillStart;
      await queueDb.query('CHECKPOINT');
      await sleep(500);
      const start = performance.now();
      await instance.startRelays(relays);
      while ((await instance.unpublished()) > 0) await sleep(10);
      const drainMs = performance.now() - start;
      const received = await new PgQueue(queueDb).depth(destination);
      return { fillMs, drainMs, received };
    },
  );
}

interface Latency {
  p50: number;
  p99: number;
  max: number;
  sent: number;
  published: number;
}

async function latency(contender: Contender, relays: number): Promise<Latency> {
  const startedAt = new Map<string, number>();
  const samples: number[] = [];
  return inFreshSchema(
    contender,
    (messages) => {
      const now = performance.now();
      for (const m of messages) {
        const t = startedAt.get(m.id);
        if (t !== undefined) samples.push(now - t);
      }
    },
    async (instance) => {
      await instance.startRelays(relays);
      const total = rate * (seconds + 1);
      const begin = performance.now();
      const pending: Promise<void>[] = [];
      for (let i = 0; i < total; i++) {
        const due = begin + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        const m = message();
        // The first second warms up: not sampled.
        if (i >= rate) startedAt.set(m.id, performance.now());
        pending.push(instance.commit([m]));
      }
      await Promise.all(pending);
      const deadline = performance.now() + 10_000;
      while ((await instance.unpublished()) > 0 && performance.now() < deadline) await sleep(20);
      const sorted = samples.sort((a, b) => a - b);
      return {
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.at(-1) ?? NaN,
        sent: rate * seconds,
        published: sorted.length,
      };
    },
  );
}

export default async function main(): Promise<void> {
  if (process.env.BENCH_OUTBOX_SERVER === 'own') {
    ownServer = await startPgServer({
      walLevel: 'logical',
      fsync: true,
      settings: { shared_buffers: '128MB' },
    });
    url = ownServer.url;
  }
  try {
    await run();
  } finally {
    await ownServer?.stop();
  }
}

async function run(): Promise<void> {
  const level = await walLevel();
  if (level === 'logical') contenders.push(keelWalContender(batchSize));
  const load = os.loadavg().map((l) => l.toFixed(1));
  console.log('bench/outbox — method');
  console.log(
    `  node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load average ${load.join(' ')} at start; PostgreSQL at ${new URL(url).host}`,
  );
  console.log(
    "  each measurement in a fresh schema: the contender's outbox table and keel's PostgreSQL queue",
  );
  console.log(
    '  both contenders publish through the same PgQueue.publish (a committed INSERT) before marking rows: at-least-once, same durability',
  );
  console.log(
    `  (a) throughput: ${fmt(rows)} rows committed (${perTx} per transaction, ${fmt(keys)} keys) with no relay running,`,
  );
  console.log(
    `      then relay(s) started and timed until no row is unpublished; ${rounds} interleaved rounds, best (median beside it)`,
  );
  console.log(
    `  (b) latency: ${fmt(rate)} rows/s, one per transaction, for ${seconds} s after a 1 s warm-up, relays running;`,
  );
  console.log('      from just before the business transaction to the queue confirming the publish');
  console.log(
    level === 'logical'
      ? `  the server runs wal_level=logical${ownServer === undefined ? '' : ' (started by the bench: BENCH_OUTBOX_SERVER=own)'}: the WAL outbox runs too`
      : `  the server runs wal_level=${level}: the WAL outbox does not run (BENCH_OUTBOX_SERVER=own starts a logical server for every contender)`,
  );
  console.log('  contenders:');
  for (const c of contenders) console.log(`    ${c.name.padEnd(12)} ${c.how}`);
  console.log('  ratio: throughput keel / peer, latency peer / keel: above 1 means keel is ahead\n');

  const runs = new Map<string, number[]>();
  const tag = (c: Contender, relays: number): string => `${c.name} ×${relays}`;
  for (let round = 0; round < rounds; round++) {
    for (const relays of relayCounts) {
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!);
      for (const c of order) {
        const t = await throughput(c, relays);
        const perSecond = rows / (t.drainMs / 1000);
        runs.set(tag(c, relays), [...(runs.get(tag(c, relays)) ?? []), perSecond]);
        console.log(
          `  round ${round + 1} ${tag(c, relays).padEnd(16)} commit ${fmt(t.fillMs)} ms, drain ${fmt(t.drainMs)} ms, ${fmt(perSecond)} rows/s; queue received ${fmt(t.received)}${t.received < rows ? ' (ROWS LOST)' : ''}`,
        );
      }
    }
  }
  const lat = new Map<string, Latency>();
  for (const c of contenders) {
    const l = await latency(c, 1);
    lat.set(c.name, l);
    console.log(
      `  latency ${c.name.padEnd(12)} p50 ${fmt(l.p50, 1)} ms, p99 ${fmt(l.p99, 1)} ms, max ${fmt(l.max, 1)} ms (${fmt(l.published)} of ${fmt(l.sent)} sampled rows published)`,
    );
  }
  console.log('');
  for (const relays of relayCounts) {
    for (const c of contenders) {
      const r = runs.get(tag(c, relays))!;
      console.log(
        `  ${tag(c, relays).padEnd(16)} best ${fmt(Math.max(...r))} rows/s, median ${fmt(median(r))}`,
      );
    }
  }
  console.log('');
  for (const relays of relayCounts) {
    const k = Math.max(...runs.get(tag(contenders[0]!, relays))!);
    const p = Math.max(...runs.get(tag(contenders[1]!, relays))!);
    console.log(
      `bench: outbox rows/s committed → published to the PostgreSQL queue, ${relays} relay${relays > 1 ? 's' : ''} | keel ${fmt(k)} rows/s | hand-rolled ${fmt(p)} rows/s | ratio ${(k / p).toFixed(2)}`,
    );
  }
  const k = lat.get('keel')!;
  const p = lat.get('hand-rolled')!;
  for (const [q, kv, pv] of [
    ['p50', k.p50, p.p50],
    ['p99', k.p99, p.p99],
  ] as const) {
    console.log(
      `bench: ${q} commit→published latency at ${fmt(rate)} rows/s, 1 relay | keel ${fmt(kv, 1)} ms | hand-rolled (${pollMs} ms poll) ${fmt(pv, 1)} ms | ratio ${(pv / kv).toFixed(2)}`,
    );
  }
  const wal = contenders.find((c) => c.name === 'keel WAL');
  if (wal === undefined) return;
  for (const relays of relayCounts) {
    const w = Math.max(...runs.get(tag(wal, relays))!);
    const h = Math.max(...runs.get(tag(contenders[1]!, relays))!);
    console.log(
      `bench: WAL outbox messages/s committed → published to the PostgreSQL queue, ${relays} relay${relays > 1 ? 's' : ''} | keel ${fmt(w)} msg/s | hand-rolled ${fmt(h)} rows/s | ratio ${(w / h).toFixed(2)}`,
    );
  }
  const w = lat.get('keel WAL')!;
  for (const [q, wv, pv] of [
    ['p50', w.p50, p.p50],
    ['p99', w.p99, p.p99],
  ] as const) {
    console.log(
      `bench: ${q} commit→published latency at ${fmt(rate)} messages/s, WAL outbox, 1 relay | keel ${fmt(wv, 1)} ms | hand-rolled (${pollMs} ms poll) ${fmt(pv, 1)} ms | ratio ${(pv / wv).toFixed(2)}`,
    );
  }
}
