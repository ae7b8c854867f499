// bench/saga: 3-step saga instances per second, keel's SagaRunner beside DBOS Transact's
// workflows, on the same PostgreSQL, in one run.
//
// Method: one process, one PostgreSQL; each engine in a fresh schema of its own (created before,
// dropped after). N instances of a 3-step saga whose steps do nothing but return their input:
// the cost measured is the engine's own (recording the start, one checkpoint per step, the
// completion). Starts are issued with K in flight (each start durably recorded before it resolves);
// the clock runs from the first start until the last instance completed. Rounds are interleaved
// (the engine order alternates) so load from other work hits both alike; best round reported,
// median beside it.
import os from 'node:os';
import pg from 'pg';
import { defaultDatabaseUrl } from '../src/db/index.ts';
import type { SagaContender } from './saga/contender.ts';
import { dbosContender } from './saga/dbos.ts';
import { keelContender } from './saga/keel.ts';

const url = process.env.DATABASE_URL ?? defaultDatabaseUrl;
const instances = Number(process.env.BENCH_SAGA_INSTANCES ?? 1000);
const rounds = Number(process.env.BENCH_SAGA_ROUNDS ?? 3);
const inFlight = Number(process.env.BENCH_SAGA_IN_FLIGHT ?? 32);
const poolSize = 10;

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]! + 0) / 2;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Starts `count` instances, `inFlight` at a time, and waits for all to complete; instances/s. */
async function measure(instance: Awaited<ReturnType<SagaContender['open']>>, count: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) await instance.start(next++);
    }),
  );
  await instance.completed(count);
  return count / ((performance.now() - t0) / 1000);
}

export default async function main(): Promise<void> {
  const contenders = [keelContender(inFlight, poolSize), dbosContender(poolSize)];
  console.log('bench/saga — method');
  console.log(
    `  node ${process.version}, ${os.cpus().length} cores, load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at start; PostgreSQL at ${new URL(url).host}`,
  );
  console.log(
    '  one process; each engine in a fresh schema of its own on the same server, opened once for the run',
  );
  console.log(
    `  ${fmt(instances)} instances of a 3-step saga per round (steps return their input), started ${inFlight} at a time;`,
  );
  console.log(
    '  instances/s = instances / (first start → last completion committed); 100 warm-up instances first',
  );
  console.log(`  ${rounds} rounds, engine order alternating; best round (median beside it)`);
  for (const c of contenders) console.log(`    ${c.system.padEnd(5)} ${c.how}`);
  console.log('  ratio: keel / dbos instances per second; above 1 means keel is ahead\n');

  const schemas = new Map(contenders.map((c) => [c, `bench_saga_${c.system}_${process.pid}`]));
  const opened = new Map<SagaContender, Awaited<ReturnType<SagaContender['open']>>>();
  const results = new Map<SagaContender, number[]>(contenders.map((c) => [c, []]));
  try {
    for (const c of contenders) {
      await admin((client) => client.query(`DROP SCHEMA IF EXISTS ${schemas.get(c)!} CASCADE`));
      const instance = await c.open(url, schemas.get(c)!);
      opened.set(c, instance);
      await measure(instance, 100);
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? contenders : [...contenders].reverse();
      for (const c of order) {
        await admin((client) => client.query('CHECKPOINT').catch(() => undefined));
        const rate = await measure(opened.get(c)!, instances);
        results.get(c)!.push(rate);
        console.log(`  round ${round + 1} ${c.system.padEnd(5)} ${fmt(rate)} instances/s`);
      }
    }
  } finally {
    for (const instance of opened.values()) await instance.close().catch(() => undefined);
    for (const schema of schemas.values()) {
      await admin((client) => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).catch(() => undefined);
    }
  }
  const best = (c: SagaContender): number => Math.max(...results.get(c)!);
  const [keel, dbos] = contenders as [SagaContender, SagaContender];
  console.log(
    `\n  keel best ${fmt(best(keel))} (median ${fmt(median(results.get(keel)!))}), dbos best ${fmt(best(dbos))} (median ${fmt(median(results.get(dbos)!))}) instances/s\n`,
  );
  console.log(
    `bench: 3-step saga instances per second, ${fmt(instances)} instances, ${inFlight} in flight | keel ${fmt(best(keel))} instances/s | dbos ${fmt(best(dbos))} instances/s | ratio ${(best(keel) / best(dbos)).toFixed(2)}`,
  );
}
