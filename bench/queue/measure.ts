// The two measurements of bench/queue, the same for every contender.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Contender, Instance, JobPayload } from './contender.ts';

export interface Throughput {
  jobs: number;
  /** Jobs completed (all of them unless the drain ran out of budget). */
  completed: number;
  enqueueMs: number;
  drainMs: number;
  /** false when the drain budget ran out first: the rates are then over what was done. */
  finished: boolean;
}

export interface Latency {
  rate: number;
  sent: number;
  handled: number;
  p50: number;
  p99: number;
  max: number;
  /** Enqueue calls that failed (the first error's message beside it). */
  sendErrors: number;
  firstError: string | undefined;
  /** false when the contender fell behind and left jobs unhandled at the end. */
  kept_up: boolean;
}

/** Runs `body` against the contender in a schema created for it and dropped afterwards. */
export async function inFreshSchema<T>(
  url: string,
  contender: Contender,
  body: (instance: Instance) => Promise<T>,
): Promise<T> {
  const schema = `bench_queue_${contender.system.replace(/[^a-z]/g, '_')}_${contender.variant}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.query(`CREATE SCHEMA ${schema}`);
    // What the previous contender left behind (a backlog it fell behind on, dirty pages, a
    // dropped schema) must not be written out during this one's measurement.
    await admin.query('CHECKPOINT');
    await sleep(1000);
    const instance = await contender.open(schema, url);
    try {
      return await body(instance);
    } finally {
      await instance.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

/**
 * Enqueue `jobs` with the bulk API (no worker running), then start the worker and time until the
 * last job is completed in the database: the handler saw all of them and `remaining()` reads 0.
 */
export async function throughput(
  instance: Instance,
  jobs: number,
  chunk: number,
  budgetMs: number,
): Promise<Throughput> {
  const t0 = performance.now();
  await instance.enqueueBulk(jobs, chunk, () => ({ t: 0 }));
  const t1 = performance.now();
  let handled = 0;
  let allHandled: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allHandled = resolve));
  await instance.startWorker(() => {
    if (++handled === jobs) allHandled();
  });
  const deadline = t1 + budgetMs;
  await Promise.race([done, sleep(Math.max(0, deadline - performance.now()))]);
  // Handled is not completed: wait for the completions (batched by some) to reach the table.
  let left = await instance.remaining();
  while (left > 0 && performance.now() < deadline) {
    await sleep(2);
    left = await instance.remaining();
  }
  const t2 = performance.now();
  return { jobs, completed: jobs - left, enqueueMs: t1 - t0, drainMs: t2 - t1, finished: left === 0 };
}

/**
 * Offers `rate` jobs/s for `seconds`, each job enqueued alone with the single-job API, and
 * records, for each, the time from just before its enqueue call to its handler's start. The
 * first second is a warm-up and not counted. Waits up to `graceMs` after the last send.
 */
export async function latency(
  instance: Instance,
  rate: number,
  seconds: number,
  graceMs: number,
): Promise<Latency> {
  const warmupMs = 1000;
  const samples: number[] = [];
  let handled = 0;
  let start = 0;
  await instance.startWorker((payload: JobPayload) => {
    handled++;
    const now = performance.now();
    if (payload.t - start >= warmupMs) samples.push(now - payload.t);
  });
  await sleep(200);
  const total = Math.round(rate * (seconds + warmupMs / 1000));
  const sends: Promise<void>[] = [];
  let sendErrors = 0;
  let firstError: string | undefined;
  start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (sent < due) {
      sent++;
      sends.push(
        instance.enqueueOne({ t: performance.now() }).catch((error: unknown) => {
          sendErrors++;
          firstError ??= error instanceof Error ? error.message : String(error);
        }),
      );
    }
    await sleep(1);
  }
  await Promise.all(sends);
  const deadline = performance.now() + graceMs;
  while (handled < total && performance.now() < deadline) await sleep(10);
  samples.sort((a, b) => a - b);
  const pick = (q: number): number =>
    samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? NaN;
  return {
    rate,
    sent: total - sendErrors,
    handled,
    p50: pick(0.5),
    p99: pick(0.99),
    max: samples.at(-1) ?? NaN,
    sendErrors,
    firstError,
    kept_up: handled >= total - sendErrors,
  };
}
