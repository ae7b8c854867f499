// bench/observability: what tracing and metrics cost, on against off, in one run.
//
// Method: one process, an SDK registered as an application would (AsyncLocalStorage context,
// a batch span processor feeding an exporter that drops spans, a Prometheus reader). "off" is
// the bare handler or policy; "on" is the same wrapped by keel/observability. Rounds alternate
// off/on after a warm-up; each figure is the best round. Two questions:
//   1. the interceptor itself: a no-op handler called in a loop (µs per message added);
//   2. the consumer over the PostgreSQL queue (PGlite, or KEEL_DB=pg): messages per second.
// The target: at most 15 % throughput cost on the consumer.
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { migrate } from '../src/db/index.ts';
import { createEnvelope, PgQueue, pgQueueMigrations, type Handler } from '../src/messaging/index.ts';
import { instrumentConsumer, setupObservability, tracedHandler } from '../src/observability/index.ts';
import { createTestDb } from '../src/testing/index.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 4);
const messages = Number(process.env.BENCH_MESSAGES ?? 2000);
const calls = Number(process.env.BENCH_CALLS ?? 200_000);

const dropSpans: SpanExporter = {
  export(_spans: ReadableSpan[], done) {
    done({ code: 0 });
  },
  async shutdown() {},
};

async function handlerLoop(handler: Handler): Promise<number> {
  const message = createEnvelope({ type: 'bench.v1', payload: {}, headers: {} });
  const delivery = { destination: 'bench', attempt: 1, signal: new AbortController().signal };
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await handler(message, delivery);
  return Number(process.hrtime.bigint() - start) / calls / 1000;
}

async function consumerRate(
  queue: PgQueue,
  destination: string,
  handler: Handler,
  on: boolean,
): Promise<number> {
  const batch = Array.from({ length: messages }, (_, i) =>
    createEnvelope({ type: 'bench.v1', payload: { i } }),
  );
  for (let i = 0; i < batch.length; i += 500) await queue.publish(destination, batch.slice(i, i + 500));
  let left = messages;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const counted: Handler = async (message, delivery) => {
    await handler(message, delivery);
  };
  const consumer = queue.consumer(
    destination,
    on ? tracedHandler(counted, { destination, meter }) : counted,
    {
      concurrency: 8,
      prefetch: 8,
      pollIntervalMs: 50,
    },
  );
  if (on) instrumentConsumer(consumer, meter, destination);
  consumer.events.on('acked', ({ messages: acked }) => {
    left -= acked.length;
    if (left <= 0) finish();
  });
  const start = process.hrtime.bigint();
  await consumer.start();
  await done;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await consumer.stop();
  return messages / seconds;
}

const otel = setupObservability({
  serviceName: 'bench',
  prometheus: true,
  spanProcessors: [new BatchSpanProcessor(dropSpans)],
});
const meter = otel.meterProvider.getMeter('keel');

export default async function main(): Promise<void> {
  const noop: Handler = async () => {};
  const traced = tracedHandler(noop, { destination: 'bench', meter });
  await handlerLoop(noop);
  await handlerLoop(traced);
  const off: number[] = [];
  const on: number[] = [];
  for (let r = 0; r < rounds; r++) {
    off.push(await handlerLoop(noop));
    on.push(await handlerLoop(traced));
  }
  const bestOff = Math.min(...off);
  const bestOn = Math.min(...on);
  console.log(
    `interceptor: off ${bestOff.toFixed(3)} µs/msg, on ${bestOn.toFixed(3)} µs/msg: +${(bestOn - bestOff).toFixed(2)} µs per message (span, metrics, log context)`,
  );

  const db = await createTestDb({ schemaPrefix: 'benchotel', trackStatements: false });
  try {
    await migrate(db, pgQueueMigrations);
    const queue = new PgQueue(db);
    const work: Handler = async () => {};
    const rates = { off: [] as number[], on: [] as number[] };
    await consumerRate(queue, 'warm', work, false);
    // Order alternates each round, so a drift (table growth, a neighbour's load) hits both alike.
    for (let r = 0; r < rounds; r++) {
      for (const on of r % 2 === 0 ? [false, true] : [true, false]) {
        (on ? rates.on : rates.off).push(await consumerRate(queue, `${on ? 'on' : 'off'}-${r}`, work, on));
      }
    }
    const rateOff = Math.max(...rates.off);
    const rateOn = Math.max(...rates.on);
    const cost = (1 - rateOn / rateOff) * 100;
    console.log(
      `consumer over PgQueue (${db.backend}, ${messages} msgs, concurrency 8): off ${rateOff.toFixed(0)} msg/s, on ${rateOn.toFixed(0)} msg/s: ${cost.toFixed(1)} % cost (target <= 15 %)`,
    );
  } finally {
    await db.close();
    await otel.shutdown();
  }
}
