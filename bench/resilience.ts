// bench/resilience: what keel's policies cost per call, beside cockatiel and opossum.
//
// Method: one process; every contender runs the same no-op async function in a sequential
// `await` loop. Rounds are interleaved (contender order rotates each round, after one
// discarded warm-up round) so drift in CPU frequency or a neighbour's load hits all of them
// alike. Each contender's time per call is its fastest round (the one least disturbed by
// other work on the machine; the median is printed beside it); its overhead is that minus
// the bare `await fn()` figure of the same run. Heap: 10 million calls through one policy,
// then forced GCs, heap used compared with before.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  circuitBreaker as cockatielBreaker,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleAll,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  TimeoutStrategy,
  wrap,
} from 'cockatiel';
import OpossumBreaker from 'opossum';
import { circuitBreaker, pipeline, retry, timeout } from '../src/resilience/index.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 15);
/** Target wall time per contender per round; calls per round are calibrated to it. */
const roundMs = Number(process.env.BENCH_ROUND_MS ?? 100);
const heapCalls = Number(process.env.BENCH_HEAP_CALLS ?? 10_000_000);

type Call = () => Promise<unknown>;

const work = async (): Promise<number> => 1;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) return g();
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function loop(call: Call, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await call();
  return Number(process.hrtime.bigint() - start) / n;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Timing {
  best: number;
  median: number;
}

async function measure(contenders: Record<string, Call>): Promise<Map<string, Timing>> {
  const names = Object.keys(contenders);
  const calls = new Map<string, number>();
  for (const name of names) {
    const ns = await loop(contenders[name]!, 2000);
    calls.set(name, Math.max(1000, Math.round((roundMs * 1e6) / ns)));
  }
  const samples = new Map<string, number[]>(names.map((n) => [n, []]));
  for (let round = 0; round <= rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) {
      const ns = await loop(contenders[name]!, calls.get(name)!);
      if (round > 0) samples.get(name)!.push(ns);
    }
  }
  return new Map(
    [...samples].map(([name, values]) => [name, { best: Math.min(...values), median: median(values) }]),
  );
}

async function retainedBytesPerCall(call: Call): Promise<number> {
  for (let i = 0; i < 100_000; i++) await call();
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < heapCalls; i++) await call();
  gc();
  gc();
  return (process.memoryUsage().heapUsed - before) / heapCalls;
}

const fmt = (n: number, digits = 0): string => n.toFixed(digits);

/** ratio = peer / keel: above 1 means keel is ahead. Overheads below 1 ns are counted as 1 ns. */
function line(
  question: string,
  keel: number,
  peerName: string,
  peer: number,
  unit: string,
  floor: number,
  digits = 0,
): string {
  const ratio = Math.max(peer, floor) / Math.max(keel, floor);
  return `bench: ${question} | keel ${fmt(keel, digits)} ${unit} | ${peerName} ${fmt(peer, digits)} ${unit} | ratio ${ratio.toFixed(2)}`;
}

export default async function main(): Promise<void> {
  const keelRetry = retry({ maxAttempts: 3 });
  const keelBreaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 5 }, openMs: 10_000 });
  const keelAll = pipeline(
    retry({ maxAttempts: 3 }),
    circuitBreaker({ threshold: { kind: 'consecutive', failures: 5 }, openMs: 10_000 }),
    timeout(1000),
  );
  // opossum's defaults: 10 s timeout, opens at 50 % errors over a 10 s rolling window of 10
  // buckets, tries again after 30 s. keel configured to do the same job.
  const keelAsOpossum = pipeline(
    circuitBreaker({
      threshold: { kind: 'time', windowMs: 10_000, buckets: 10, failureRate: 0.5, minimumCalls: 1 },
      openMs: 30_000,
    }),
    timeout(10_000),
  );

  const cRetry = cockatielRetry(handleAll, { maxAttempts: 3, backoff: new ExponentialBackoff() });
  const cBreaker = cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
  const cAll = wrap(
    cockatielRetry(handleAll, { maxAttempts: 3, backoff: new ExponentialBackoff() }),
    cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
    cockatielTimeout(1000, TimeoutStrategy.Cooperative),
  );
  const opossum = new OpossumBreaker(work);

  console.log('bench/resilience — method');
  console.log(
    `  node ${process.version}, ${process.platform}/${process.arch}; one process, a no-op async function awaited in a loop`,
  );
  console.log(
    `  ${rounds} interleaved rounds (+1 warm-up) of ~${roundMs} ms per contender; ns/call of the fastest round (median beside it)`,
  );
  console.log(
    '  overhead = contender − bare await, fastest rounds; ratio = peer / keel, above 1 means keel is ahead',
  );
  console.log(
    '  keel retry(maxAttempts 3) | breaker(5 consecutive) | timeout(1 s, cooperative); cockatiel 3.2.1 the same; opossum 9.0.0 defaults',
  );

  const t = await measure({
    bare: () => work(),
    'keel retry': () => keelRetry.execute(work),
    'cockatiel retry': () => cRetry.execute(work),
    'keel breaker': () => keelBreaker.execute(work),
    'cockatiel breaker': () => cBreaker.execute(work),
    'keel retry+breaker+timeout': () => keelAll.execute(work),
    'cockatiel retry+breaker+timeout': () => cAll.execute(work),
    'keel as opossum defaults': () => keelAsOpossum.execute(work),
    'opossum defaults': () => opossum.fire(),
  });
  const bare = t.get('bare')!;
  console.log('\n  ns/call                               fastest    median   overhead (fastest / median)');
  for (const [name, { best, median: mid }] of t) {
    console.log(
      `    ${name.padEnd(34)} ${fmt(best, 1).padStart(8)} ${fmt(mid, 1).padStart(9)}   ${fmt(best - bare.best, 1)} / ${fmt(mid - bare.median, 1)}`,
    );
  }

  const over = (name: string): number => t.get(name)!.best - bare.best;
  const lines = [
    line('retry overhead per call', over('keel retry'), 'cockatiel', over('cockatiel retry'), 'ns', 1),
    line('breaker overhead per call', over('keel breaker'), 'cockatiel', over('cockatiel breaker'), 'ns', 1),
    line(
      'retry+breaker+timeout overhead per call',
      over('keel retry+breaker+timeout'),
      'cockatiel',
      over('cockatiel retry+breaker+timeout'),
      'ns',
      1,
    ),
    line(
      "breaker+timeout with opossum's defaults, overhead per call",
      over('keel as opossum defaults'),
      'opossum',
      over('opossum defaults'),
      'ns',
      1,
    ),
  ];

  console.log(
    `\n  heap: ${heapCalls.toLocaleString('en')} calls each, heap used after forced GC minus before (bytes/call; below 0.01 counted as 0.01 for the ratio)`,
  );
  const keelHeap = await retainedBytesPerCall(() => keelAll.execute(work));
  const opossumHeap = await retainedBytesPerCall(() => opossum.fire());
  lines.push(
    line(
      `heap retained per call after ${heapCalls / 1e6}M calls`,
      keelHeap,
      'opossum',
      opossumHeap,
      'B',
      0.01,
      2,
    ),
  );
  opossum.shutdown();

  console.log(`  bare await: ${fmt(bare.best, 1)} ns/call (fastest round)\n`);
  for (const l of lines) console.log(l);
}
