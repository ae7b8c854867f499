// bench/outbox-brokers: the outbox relay from PostgreSQL to each broker, against that broker's
// raw publish rate, in one run. `npm run bench -- outbox-brokers [rabbitmq|redis|kafka|nats ...]`.
//
// Method: per broker, BENCH_OUTBOX_ROWS messages (the bench/brokers payload: ~100 bytes, a key
// each, two headers).
//   - raw: the broker's own client (bench/brokers' raw side) publishes them in chunks of the
//     relay's batch size, each chunk confirmed before the next, the same durability settings.
//   - keel: one OutboxRelay is started on the empty outbox and its connections opened (not
//     timed, as the raw side's connect is not); the rows are then committed in one transaction
//     and the relay timed from that commit until every row is published through keel's adapter
//     and marked: claim, publish (confirmed), mark published — the next batch claimed while one
//     is published.
// BENCH_OUTBOX_RETENTION_MS=0 runs the relay with retentionMs 0 (rows deleted as they are
// published instead of archived). The database is PGlite by default, KEEL_DB=pg for the server.
// Rounds alternate raw/keel after a warm-up; each figure is the best round, the medians are
// printed beside. The issue's target: keel ≥ 80 % of raw. First, the same relay to a publisher
// that returns at once: the PostgreSQL side alone (claim and mark), the ceiling for every broker.
//
// The WAL outbox (BENCH_WAL=off leaves it out): the same messages written with addToWalOutbox
// (transactions of 1,000, as above) on a wal_level=logical server the bench starts itself (fsync
// on, the same disk), then one WalOutboxRelay timed from the moment the server starts streaming
// (its connection's setup is not timed, as the raw side's connect is not) until every message is
// published: it streams them from the replication slot (nothing claimed, marked or deleted) and
// confirms the position. It runs in the same rounds, beside raw and the table relay.
import { migrate } from '../src/db/index.ts';
import type { Envelope, Publisher } from '../src/messaging/index.ts';
import { OutboxRelay, addToOutbox, outboxMigrations } from '../src/outbox/index.ts';
import { createTestDb, testDbBackend } from '../src/testing/index.ts';
import { kafkaPair } from './brokers/kafka.ts';
import { openWalBench, type WalBench } from './outbox/wal-relay.ts';
import { natsPair } from './brokers/nats.ts';
import { messages, until, type Pair } from './brokers/pair.ts';
import { rabbitPair } from './brokers/rabbitmq.ts';
import { redisPair } from './brokers/redis.ts';

const rows = Number(process.env.BENCH_OUTBOX_ROWS ?? 10_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
/** The relay's `retentionMs`: unset keeps published rows (in the archive); `0` deletes each row as it is published. */
const retentionMs: number | false =
  process.env.BENCH_OUTBOX_RETENTION_MS === undefined ? false : Number(process.env.BENCH_OUTBOX_RETENTION_MS);
const batchSize = 500;
const all: Pair[] = [rabbitPair, redisPair, kafkaPair, natsPair];

const fmt = (n: number): string => Math.round(n).toLocaleString('en');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Times one relay, already started and connected, from the commit of `batch` to the outbox until
 * every row is published through `publish` and marked. Returns rows/s and this process's CPU per
 * 1 000 rows.
 *
 * The relay's one-time costs are not timed, as the raw side's connect is not: its LISTEN
 * connection, the pool's connections and their first plans (a warm-up claim on the empty table).
 * The rows are committed in one transaction, so the relay finds them all at once, as it finds a
 * backlog; without key locks, since nothing else writes these keys.
 */
async function timeRelay(
  schemaPrefix: string,
  destination: string,
  batch: readonly Envelope[],
  publish: Publisher['publish'],
): Promise<{ rate: number; cpuMsPer1000: number }> {
  // As deployed: production's Db does not check for nested calls (PgDbOptions.checkNestedUse).
  const db = await createTestDb({ schemaPrefix, checkNestedUse: false, trackStatements: false });
  const relay = new OutboxRelay(db, { publish }, { batchSize, pollIntervalMs: 50, retentionMs });
  try {
    await migrate(db, outboxMigrations);
    let published = 0;
    relay.events.on('published', ({ messages: sent }) => (published += sent.length));
    await relay.start();
    // The claim and the marks run on two pooled connections: both opened before the clock starts.
    await Promise.all([relay.relayOnce(), db.query('SELECT 1')]);
    await db.transaction(async (tx) => {
      for (let i = 0; i < batch.length; i += 1000)
        await addToOutbox(tx, destination, batch.slice(i, i + 1000), { lockKeys: false });
    });
    const cpu = process.cpuUsage();
    const start = performance.now();
    await until(() => published, batch.length, 300_000, `relay to ${destination}`);
    const rate = batch.length / ((performance.now() - start) / 1000);
    const used = process.cpuUsage(cpu);
    // µs per row is ms per 1 000 rows.
    return { rate, cpuMsPer1000: (used.user + used.system) / batch.length };
  } finally {
    await relay.stop();
    await db.close();
  }
}

async function relayRound(
  pair: Pair,
  round: number,
  wal: WalBench | undefined,
): Promise<{ keel: number; raw: number; wal: number }> {
  const { keel, raw, close } = await pair.open();
  try {
    const destination = `relay-${round}`;
    const batch = messages(rows);
    const rawStart = performance.now();
    await raw.publish(`${destination}-raw`, batch, batchSize);
    const rawRate = rows / ((performance.now() - rawStart) / 1000);
    const publish: Publisher['publish'] = (to, list) => keel.publish(to, list, list.length);
    const relayed = await timeRelay(`bench_relay_${pair.id}`, `${destination}-keel`, batch, publish);
    const walRelayed = await wal?.time(`${destination}-wal`, batch, publish, batchSize);
    return { keel: relayed.rate, raw: rawRate, wal: walRelayed?.rate ?? 0 };
  } finally {
    await close();
  }
}

/** The WAL relay to a publisher that does nothing: the PostgreSQL side alone, as `ceiling` for the table relay. */
async function walCeiling(wal: WalBench): Promise<number> {
  console.log('\nno broker, the WAL outbox: the PostgreSQL side alone (decoding and streaming)');
  await wal.time('wal-none-0', messages(rows), async () => undefined, batchSize); // warm-up
  const rates: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const { rate, cpuMsPer1000 } = await wal.time(
      `wal-none-${round}`,
      messages(rows),
      async () => undefined,
      batchSize,
    );
    rates.push(rate);
    console.log(
      `  round ${round}: WAL relay ${fmt(rate)} msg/s, relay process CPU ${cpuMsPer1000.toFixed(1)} ms per 1,000 messages`,
    );
  }
  console.log(`  median: WAL relay ${fmt(median(rates))} msg/s`);
  return Math.max(...rates);
}

/**
 * The relay to a publisher that does nothing: claim and mark alone, the PostgreSQL side's
 * ceiling for every broker in this run. A broker whose raw rate is above ceiling / 0.8 cannot
 * see the relay reach 0.8 of it here.
 */
async function ceiling(): Promise<number> {
  console.log('\nno broker (a publisher that returns at once): the PostgreSQL side alone');
  await timeRelay('bench_relay_none', 'relay-none-0', messages(rows), async () => undefined); // warm-up
  const rates: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const { rate, cpuMsPer1000 } = await timeRelay(
      'bench_relay_none',
      `relay-none-${round}`,
      messages(rows),
      async () => undefined,
    );
    rates.push(rate);
    console.log(
      `  round ${round}: relay ${fmt(rate)} rows/s, relay process CPU ${cpuMsPer1000.toFixed(1)} ms per 1,000 rows`,
    );
  }
  console.log(`  median: relay ${fmt(median(rates))} rows/s`);
  return Math.max(...rates);
}

export default async function main(): Promise<void> {
  const wanted = process.argv.slice(3);
  const pairs = wanted.length === 0 ? all : all.filter((p) => wanted.includes(p.id));
  console.log(
    [
      'bench/outbox-brokers: outbox relay throughput to each broker beside its raw publish rate',
      `  database: ${testDbBackend()}; ${fmt(rows)} rows per round, relay batch ${batchSize}, retentionMs ${String(retentionMs)}${retentionMs === 0 ? ' (rows deleted on publish)' : ' (rows moved to the archive on publish)'}, raw chunks of ${batchSize}; ${rounds} rounds, best each (medians beside)`,
    ].join('\n'),
  );
  const best = await ceiling();
  const lines: string[] = [
    `ceiling: outbox relay to a no-op publisher (the PostgreSQL side alone), ${fmt(rows)} rows | keel ${fmt(best)} rows/s; 0.8 of a raw rate above ${fmt(best / 0.8)} msg/s is out of reach in this run`,
  ];
  const wal = process.env.BENCH_WAL === 'off' ? undefined : await openWalBench();
  if (wal !== undefined) {
    const walBest = await walCeiling(wal);
    lines.push(
      `ceiling: WAL outbox relay to a no-op publisher (the PostgreSQL side alone), ${fmt(rows)} messages | keel ${fmt(walBest)} msg/s`,
    );
  }
  for (const pair of pairs) {
    console.log(`\n${pair.title}:`);
    for (const setting of pair.settings) console.log(`  ${setting}`);
    await relayRound(pair, 0, wal); // warm-up, not counted
    const keelRates: number[] = [];
    const rawRates: number[] = [];
    const walRates: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const { keel, raw, wal: walRate } = await relayRound(pair, round, wal);
      keelRates.push(keel);
      rawRates.push(raw);
      walRates.push(walRate);
      console.log(
        `  round ${round}: relay ${fmt(keel)} msg/s, raw publish ${fmt(raw)} msg/s, ratio ${(keel / raw).toFixed(2)}${
          wal === undefined ? '' : `; WAL relay ${fmt(walRate)} msg/s, ratio ${(walRate / raw).toFixed(2)}`
        }`,
      );
    }
    const [keelBest, rawBest] = [Math.max(...keelRates), Math.max(...rawRates)];
    const [keelMedian, rawMedian] = [median(keelRates), median(rawRates)];
    console.log(
      `  median: relay ${fmt(keelMedian)} msg/s, raw publish ${fmt(rawMedian)} msg/s, ratio ${(keelMedian / rawMedian).toFixed(2)}; median of the rounds' ratios ${median(keelRates.map((k, i) => k / rawRates[i]!)).toFixed(2)}`,
    );
    lines.push(
      `bench: outbox relay to ${pair.title}, ${fmt(rows)} rows (higher is better) | keel ${fmt(keelBest)} msg/s | ${pair.peer} publish ${fmt(rawBest)} msg/s | ratio ${(keelBest / rawBest).toFixed(2)}`,
    );
    if (wal !== undefined) {
      const walBest = Math.max(...walRates);
      console.log(
        `  median: WAL relay ${fmt(median(walRates))} msg/s, ratio ${(median(walRates) / rawMedian).toFixed(2)}; median of the rounds' ratios ${median(walRates.map((w, i) => w / rawRates[i]!)).toFixed(2)}`,
      );
      lines.push(
        `bench: WAL outbox relay to ${pair.title}, ${fmt(rows)} messages (higher is better) | keel ${fmt(walBest)} msg/s | ${pair.peer} publish ${fmt(rawBest)} msg/s | ratio ${(walBest / rawBest).toFixed(2)}`,
      );
    }
  }
  await wal?.close();
  console.log('');
  for (const line of lines) console.log(line);
}
