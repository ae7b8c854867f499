// bench/queue: keel's PostgreSQL queue beside pg-boss and graphile-worker on the same server.
//
// Method: one process, one PostgreSQL; each contender (library x configuration) in a schema of
// its own, created fresh before and dropped after each measurement.
// (a) Throughput: enqueue N jobs with the library's bulk API (chunks of 1 000, no worker running),
//     then start the worker with a no-op handler and time until the database shows no job left
//     uncompleted. Enqueue and drain are timed separately; end to end = N / (enqueue + drain).
//     Rounds are interleaved (contender order rotates each round) so load from other work on the
//     machine hits all of them alike; the best round is reported, the median beside it.
// (b) Latency: a steady offered load (default 1 000 jobs/s for 10 s after a 1 s warm-up), each job
//     enqueued alone with the single-job API; the time from just before the enqueue call to the
//     start of its handler, p50 / p99 / max.
import os from 'node:os';
import { defaultDatabaseUrl } from '../src/db/index.ts';
import type { Contender } from './queue/contender.ts';
import { graphileContender } from './queue/graphile-worker.ts';
import { keelContender } from './queue/keel.ts';
import { inFreshSchema, latency, throughput, type Latency, type Throughput } from './queue/measure.ts';
import { pgBossContender } from './queue/pg-boss.ts';

const url = process.env.DATABASE_URL ?? defaultDatabaseUrl;
const jobs = Number(process.env.BENCH_QUEUE_JOBS ?? 20_000);
const rounds = Number(process.env.BENCH_QUEUE_ROUNDS ?? 3);
const rate = Number(process.env.BENCH_QUEUE_RATE ?? 1000);
const seconds = Number(process.env.BENCH_QUEUE_SECONDS ?? 10);
const only = process.env.BENCH_QUEUE_ONLY?.split(',');
const chunk = 1000;
const budgetMs = 60_000;
/** pg-boss's defaults fetch one job per worker every 2 s: drained over a window, not to the end. */
const slowBudgetMs = 10_000;

const contenders: Contender[] = [
  keelContender('defaults', {}, 'concurrency 1, prefetch 16, poll 1 s, NOTIFY wake-up'),
  keelContender(
    'tuned',
    { concurrency: 64, prefetch: 1000 },
    'concurrency 64, prefetch 1000 (claims up to 1 064 rows per query); acks are always batched',
  ),
  keelContender(
    'tuned',
    { concurrency: 64, prefetch: 0 },
    'concurrency 64 alone, prefetch 0',
    'keel concurrency 64',
  ),
  pgBossContender('defaults', { workers: 1, work: {} }, 'one work() worker, batchSize 1, polling every 2 s'),
  pgBossContender(
    'tuned',
    { workers: 4, work: { batchSize: 500, pollingIntervalSeconds: 0.5 } },
    '4 work() workers, batchSize 500 (fetch and completion of 500 jobs per query), polling every 0.5 s (its minimum)',
  ),
  graphileContender('defaults', {}, 'concurrentJobs 1, pollInterval 2 s, LISTEN/NOTIFY, no batching'),
  graphileContender(
    'tuned',
    {
      concurrentJobs: 24,
      maxPoolSize: 25,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
    'its performance page: concurrentJobs 24, maxPoolSize 25, localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0',
  ),
].filter((c) => only === undefined || only.some((o) => (c.name ?? `${c.system} ${c.variant}`).startsWith(o)));

const label = (c: Contender): string => c.name ?? `${c.system} ${c.variant}`;
const isSlow = (c: Contender): boolean => c.system === 'pg-boss' && c.variant === 'defaults';
const e2e = (t: Throughput): number => t.completed / ((t.enqueueMs + t.drainMs) / 1000);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';
/** A rate as printed: whole jobs, but a rate under 10 (pg-boss's defaults take a job per 2 s) with two decimals, not `0`. */
const rateText = (n: number): string => fmt(n, n < 10 ? 2 : 0);

export default async function main(): Promise<void> {
  const load = os.loadavg().map((l) => l.toFixed(1));
  console.log('bench/queue — method');
  console.log(
    `  node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load average ${load.join(' ')} at start; PostgreSQL at ${new URL(url).host}`,
  );
  console.log(
    '  every contender in a fresh schema of its own on the same server, one process, no-op handler',
  );
  console.log(
    `  (a) ${fmt(jobs)} jobs enqueued with the bulk API in chunks of ${chunk} (no worker running), then drained;`,
  );
  console.log(
    "      drained = the handler saw every job and the library's table shows none left uncompleted;",
  );
  console.log(
    `      end to end = jobs / (enqueue + drain); ${rounds} interleaved rounds, best round (median beside it)`,
  );
  console.log(
    `  (b) ${fmt(rate)} jobs/s offered for ${seconds} s after a 1 s warm-up, each job enqueued alone (single-job API);`,
  );
  console.log('      latency = start of its handler − just before its enqueue call; p50 / p99 / max');
  console.log(
    `  pg-boss defaults fetch one job every 2 s per worker: its drain is measured over a ${slowBudgetMs / 1000} s window`,
  );
  console.log(
    '  before each measurement: CHECKPOINT and 1 s of rest, so no contender pays for the one before',
  );
  console.log('  contenders:');
  for (const c of contenders) console.log(`    ${label(c).padEnd(26)} ${c.how}`);
  console.log('  ratio: throughput keel / peer, latency peer / keel: above 1 means keel is ahead\n');

  const runs = new Map<Contender, Throughput[]>(contenders.map((c) => [c, []]));
  for (let round = 0; round < rounds; round++) {
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!);
    for (const c of order) {
      if (isSlow(c) && round > 0) continue;
      const t = await inFreshSchema(url, c, (instance) =>
        throughput(instance, jobs, chunk, isSlow(c) ? slowBudgetMs : budgetMs),
      );
      runs.get(c)!.push(t);
      console.log(
        `  round ${round + 1} ${label(c).padEnd(26)} enqueue ${fmt(t.enqueueMs)} ms, drain ${fmt(t.drainMs)} ms${t.finished ? '' : ` (${fmt(t.completed)} of ${fmt(t.jobs)} in the window)`}, ${fmt(e2e(t))} jobs/s`,
      );
    }
  }
  const lat = new Map<Contender, Latency>();
  for (const c of contenders) {
    const l = await inFreshSchema(url, c, (instance) => latency(instance, rate, seconds, 10_000));
    lat.set(c, l);
    console.log(
      `  latency ${label(c).padEnd(26)} p50 ${fmt(l.p50, 1)} ms, p99 ${fmt(l.p99, 1)} ms, handled ${fmt(l.handled)} of ${fmt(l.sent)}${l.sendErrors > 0 ? `; ${fmt(l.sendErrors)} enqueue calls failed (${l.firstError})` : ''}`,
    );
  }

  const best = (c: Contender): Throughput => runs.get(c)!.reduce((a, b) => (e2e(b) > e2e(a) ? b : a));
  console.log(
    `\n  ${'contender'.padEnd(26)} ${'enqueue/s'.padStart(10)} ${'drain/s'.padStart(10)} ${'end-to-end/s'.padStart(13)} ${'(median)'.padStart(9)}   ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)}`,
  );
  for (const c of contenders) {
    const t = best(c);
    const l = lat.get(c)!;
    const note = [
      t.finished ? '' : 'drain windowed',
      l.kept_up ? '' : `fell behind: ${fmt(l.handled)} of ${fmt(l.sent)}`,
    ]
      .filter(Boolean)
      .join('; ');
    console.log(
      `  ${label(c).padEnd(26)} ${fmt(t.completed === t.jobs ? t.jobs / (t.enqueueMs / 1000) : NaN).padStart(10)} ${fmt(t.completed / (t.drainMs / 1000)).padStart(10)} ${fmt(e2e(t)).padStart(13)} ${fmt(median(runs.get(c)!.map(e2e))).padStart(9)}   ${fmt(l.p50, 1).padStart(8)} ${fmt(l.p99, 1).padStart(8)} ${fmt(l.max, 1).padStart(8)}${note ? `   (${note})` : ''}`,
    );
  }
  console.log('');

  const find = (system: string, variant: string): Contender | undefined =>
    contenders.find((c) => label(c) === `${system} ${variant}`);
  for (const variant of ['tuned', 'defaults'] as const) {
    const keel = find('keel', variant);
    if (keel === undefined) continue;
    for (const peer of ['graphile-worker', 'pg-boss']) {
      const other = find(peer, variant);
      if (other === undefined) continue;
      const k = e2e(best(keel));
      const p = e2e(best(other));
      console.log(
        `bench: jobs/s end to end, ${fmt(jobs)} jobs, no-op handler, ${variant} | keel ${fmt(k)} jobs/s | ${peer} ${rateText(p)} jobs/s | ratio ${(k / p).toFixed(2)}`,
      );
    }
  }
  for (const variant of ['tuned', 'defaults'] as const) {
    const keel = find('keel', variant);
    if (keel === undefined) continue;
    for (const peer of ['graphile-worker', 'pg-boss']) {
      const other = find(peer, variant);
      if (other === undefined) continue;
      const k = lat.get(keel)!;
      const p = lat.get(other)!;
      if (!p.kept_up || !k.kept_up) {
        console.log(
          `note: no latency line for ${variant} ${peer}: ${!p.kept_up ? peer : 'keel'} did not keep up with ${fmt(rate)} jobs/s (${fmt((p.kept_up ? k : p).handled)} of ${fmt(rate * (seconds + 1))} handled)`,
        );
        continue;
      }
      for (const [q, kv, pv] of [
        ['p50', k.p50, p.p50],
        ['p99', k.p99, p.p99],
      ] as const) {
        console.log(
          `bench: ${q} enqueue→handler latency at ${fmt(rate)} jobs/s, ${variant} | keel ${fmt(kv, 1)} ms | ${peer} ${fmt(pv, 1)} ms | ratio ${(pv / kv).toFixed(2)}`,
        );
      }
    }
  }
}
