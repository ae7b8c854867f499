// bench/brokers: keel's broker adapters beside the raw client of each engine, publish and consume
// throughput, same settings, in one run. `npm run bench -- brokers [rabbitmq|redis|kafka|nats ...]`.
import os from 'node:os';
import { messages, Span, type Pair } from './pair.ts';
import { kafkaPair } from './kafka.ts';
import { natsPair } from './nats.ts';
import { rabbitPair, rabbitPerKeyPair, rabbitStreamPair } from './rabbitmq.ts';
import { redisPair } from './redis.ts';

const count = Number(process.env.BENCH_BROKERS_MESSAGES ?? 20_000);
const rounds = Number(process.env.BENCH_BROKERS_ROUNDS ?? 3);
const chunk = 1000;
const warmup = 2000;

const pairs: Pair[] = [rabbitPair, rabbitPerKeyPair, rabbitStreamPair, redisPair, kafkaPair, natsPair];

interface Figures {
  publish: number[];
  consume: number[];
  /** ms from the consume call to the first message handled (connect, join, first fetch). */
  start: number[];
  /** This process's CPU time per message (user + system), µs: steadier than wall time under load. */
  publishCpu: number[];
  consumeCpu: number[];
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en');
const best = (values: number[]): number => Math.max(...values);
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function cpuPerMessage(since: NodeJS.CpuUsage, count: number): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / count;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function benchPair(pair: Pair): Promise<{ keel: Figures; raw: Figures }> {
  const { keel, raw, close } = await pair.open();
  const figures = {
    keel: { publish: [], consume: [], start: [], publishCpu: [], consumeCpu: [] } as Figures,
    raw: { publish: [], consume: [], start: [], publishCpu: [], consumeCpu: [] } as Figures,
  };
  try {
    // Warm-up, not counted: JIT, connections, the first declarations on each side.
    for (const who of ['keel', 'raw'] as const) {
      const side = who === 'keel' ? keel : raw;
      await side.publish(`bench-${who}-warm`, messages(warmup), chunk);
      await keel.publish(`bench-${who}-warm-consume`, messages(warmup), chunk);
      await side.consume(`bench-${who}-warm-consume`, warmup, new Span());
    }
    for (let round = 0; round < rounds; round++) {
      // Alternate who goes first, so drift and neighbours' load hit both alike.
      const order = round % 2 === 0 ? (['keel', 'raw'] as const) : (['raw', 'keel'] as const);
      for (const who of order) {
        const side = who === 'keel' ? keel : raw;
        const sent = messages(count);
        const destination = `bench-${who}-${round}`;
        let cpu = process.cpuUsage();
        const publishMs = await timed(() => side.publish(destination, sent, chunk));
        figures[who].publishCpu.push(cpuPerMessage(cpu, count));
        figures[who].publish.push(count / (publishMs / 1000));
        // Consume what keel published into a destination of its own (same bytes for both sides).
        const source = `bench-${who}-${round}-consume`;
        await keel.publish(source, messages(count), chunk);
        const span = new Span();
        const calledAt = performance.now();
        cpu = process.cpuUsage();
        await side.consume(source, count, span);
        figures[who].consumeCpu.push(cpuPerMessage(cpu, count));
        const consumeMs = span.doneAt - span.firstAt;
        const startMs = span.firstAt - calledAt;
        figures[who].consume.push(count / (consumeMs / 1000));
        figures[who].start.push(startMs);
        console.log(
          `  ${pair.id} round ${round + 1} ${who.padEnd(4)}: publish ${fmt(count / (publishMs / 1000))} msg/s (${figures[who].publishCpu.at(-1)!.toFixed(0)} µs CPU/msg), consume ${fmt(count / (consumeMs / 1000))} msg/s (${figures[who].consumeCpu.at(-1)!.toFixed(0)} µs CPU/msg, first message after ${fmt(startMs)} ms)`,
        );
      }
    }
  } finally {
    await close();
  }
  return figures;
}

export default async function main(): Promise<void> {
  const wanted = process.argv.slice(3);
  const unknown = wanted.filter((w) => !pairs.some((p) => p.id === w));
  if (unknown.length > 0) {
    console.error(
      `bench/brokers: no broker named ${unknown.join(', ')}; there are ${pairs.map((p) => p.id).join(', ')}`,
    );
    process.exit(1);
  }
  const chosen = wanted.length === 0 ? pairs : pairs.filter((p) => wanted.includes(p.id));
  const load = os.loadavg().map((l) => l.toFixed(1));
  console.log('bench/brokers — method');
  console.log(
    `  node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load average ${load.join(' ')} at start`,
  );
  console.log(
    `  per engine, keel's adapter and the raw client in one process, ${rounds} interleaved rounds (who goes first alternates);`,
  );
  console.log(
    `  each round: publish ${fmt(count)} messages (~200 B: JSON payload, a key of its own as an order id would be, 2 headers) to a fresh destination in chunks of ${fmt(chunk)},`,
  );
  console.log(
    `  each chunk confirmed before the next; then consume ${fmt(count)} messages that keel published into another fresh destination,`,
  );
  console.log(
    '  no-op handler that parses the payload, timed from the first message handled until every message is acknowledged',
  );
  console.log(
    '  (the start — connect, group join, first fetch — is printed per round beside it, not in the figure).',
  );
  console.log(`  before the rounds, one warm-up of ${fmt(warmup)} messages per side, not counted.`);
  console.log(
    '  figure: the best round (the median beside it); ratio keel / raw: above 1 means keel is ahead',
  );
  const results: string[] = [];
  for (const pair of chosen) {
    console.log(`\n${pair.title} (keel beside ${pair.peer})`);
    for (const line of pair.settings) console.log(`  ${line}`);
    const { keel, raw } = await benchPair(pair);
    for (const what of ['publish', 'consume'] as const) {
      const k = best(keel[what]);
      const r = best(raw[what]);
      console.log(
        `  ${what}: keel ${fmt(k)} msg/s (median ${fmt(median(keel[what]))}, CPU ${Math.min(...keel[`${what}Cpu`]).toFixed(0)} µs/msg), ${pair.peer} ${fmt(r)} msg/s (median ${fmt(median(raw[what]))}, CPU ${Math.min(...raw[`${what}Cpu`]).toFixed(0)} µs/msg)`,
      );
      results.push(
        `bench: ${pair.title} ${what} throughput, ${fmt(count)} messages | keel ${fmt(k)} msg/s | ${pair.peer} ${fmt(r)} msg/s | ratio ${(k / r).toFixed(2)}`,
      );
    }
  }
  console.log('');
  for (const line of results) console.log(line);
}
