// bench/schedule: keel's schedules beside pg-boss's (and graphile-worker's crontab) on the same
// PostgreSQL server. The method is printed first; docs/benchmarks.md (## schedule) has it too.
//
// (1) Lateness: one '* * * * *' schedule a contender, all on the same ticks; how long after the
//     tick its effect (one INSERT) has committed. p50 and max over BENCH_TICKS ticks.
// (2) Many due at once: BENCH_SCHEDULES schedules due at one minute boundary; from the tick to
//     the last effect's commit. keel with one scheduler, then with two, each round in the same
//     minute as a round of pg-boss (its K workers in a child process); then each alone.
import os from 'node:os';
import type pg from 'pg';
import { defaultDatabaseUrl } from '../src/db/index.ts';
import { connectAdmin, countStored, dropSchema, EffectLog, freshSchema, until } from './schedule/effect.ts';
import { burstOf, firstPerSchedule, fmt, median, ms, type Burst } from './schedule/figures.ts';
import { startGraphile } from './schedule/graphile-worker.ts';
import { printMethod } from './schedule/method.ts';
import { startKeel } from './schedule/keel.ts';
import { PgBossBurst, scheduleNames } from './schedule/pg-boss-burst.ts';
import { PgBossSchedules } from './schedule/pg-boss.ts';

const url = process.env.DATABASE_URL ?? defaultDatabaseUrl;
const ticks = positive('BENCH_TICKS', 3);
const many = positive('BENCH_SCHEDULES', 500);
/** `lateness` or `many` runs one part alone. */
const only = process.env.BENCH_SCHEDULE_ONLY;

const minute = 60_000;
/** The first measured tick is at least this long after every contender is set up. */
const settleMs = 10_000;
/** How long after the last tick of part 1 a late effect is still waited for. */
const lateBudgetMs = 30_000;

function positive(variable: string, fallback: number): number {
  const text = process.env[variable];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1)
    throw new Error(`${variable}: expected an integer >= 1, got ${text}`);
  return value;
}

/** The first minute boundary at or after `at`. */
const boundaryFrom = (at: number): number => Math.ceil(at / minute) * minute;
const clock = (at: number): string => new Date(at).toISOString().slice(11, 23);
/** A five-field cron (UTC) naming each of `instants`' minutes and hours (and so perhaps others, in the past or hours ahead). */
const cronAt = (...instants: number[]): string => {
  const field = (values: number[]): string => [...new Set(values)].join(',');
  const dates = instants.map((at) => new Date(at));
  return `${field(dates.map((d) => d.getUTCMinutes()))} ${field(dates.map((d) => d.getUTCHours()))} * * *`;
};
const load = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

const errors: string[] = [];
const onError =
  (who: string) =>
  (error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error);
    errors.push(`${who}: ${message}`);
    console.error(`  ! ${who}: ${message}`);
  };

/** Runs `body`, then every cleanup it registered, last first, whatever happened. */
async function withCleanup<T>(
  body: (defer: (cleanup: () => Promise<void>) => void) => Promise<T>,
): Promise<T> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    return await body((cleanup) => cleanups.push(cleanup));
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(onError('cleanup'));
  }
}

interface Lateness {
  label: string;
  /** Per measured tick: the first effect's commit − the tick, or undefined when none came. */
  late: (number | undefined)[];
  p50: number;
  max: number;
  duplicates: number;
  /** Effects for ticks before the schedule was created (pg-boss sends the last minute's at once). */
  beforeCreated: string[];
}

/** Part 1: one '* * * * *' schedule per contender, measured over the same `ticks` ticks. */
async function lateness(admin: pg.Client): Promise<Lateness[]> {
  return withCleanup(async (defer) => {
    const cron = '* * * * *';
    const contenders: { label: string; schema: string; log: EffectLog; createdAt: number }[] = [];
    const add = async (
      label: string,
      schema: string,
      start: (log: EffectLog) => Promise<{ stop(): Promise<void> }>,
    ): Promise<void> => {
      await freshSchema(admin, schema);
      defer(() => dropSchema(admin, schema));
      const log = new EffectLog();
      const createdAt = Date.now();
      const running = await start(log);
      defer(() => running.stop());
      contenders.push({ label, schema, log, createdAt });
    };
    await add('keel', 'bench_schedule_keel', (log) =>
      startKeel(url, 'bench_schedule_keel', ['lateness'], cron, 1, log, onError('keel')),
    );
    await add('pg-boss', 'bench_schedule_pg_boss', async (log) => {
      const boss = await PgBossSchedules.start(
        url,
        'bench_schedule_pg_boss',
        ['lateness'],
        log,
        onError('pg-boss'),
      );
      await boss.schedule(cron);
      return boss;
    });
    await add('graphile-worker', 'bench_schedule_graphile', (log) =>
      startGraphile(url, 'bench_schedule_graphile', 'lateness', log, onError('graphile-worker')),
    );

    const ready = Date.now();
    const first = boundaryFrom(ready + settleMs);
    const measured = Array.from({ length: ticks }, (_, i) => first + i * minute);
    const last = measured.at(-1)!;
    console.log(
      `  (1) set up by ${clock(ready)} UTC; measuring the ticks ${clock(first)} to ${clock(last)}, done by about ${clock(last + 5000)}`,
    );
    const reported = new Set<number>();
    await until(() => {
      // Each tick's line as soon as every contender's effect for it is in.
      for (const tick of measured)
        if (!reported.has(tick) && contenders.every((c) => c.log.count(tick) > 0)) {
          reported.add(tick);
          const parts = contenders.map((c) => `${c.label} ${ms(firstCommit(c.log, tick) - tick)} ms`);
          console.log(`      tick ${clock(tick)}  ${parts.join('  ')}`);
        }
      return reported.size === measured.length;
    }, last + lateBudgetMs);

    const results: Lateness[] = [];
    for (const c of contenders) {
      const late = measured.map((tick) =>
        c.log.count(tick) > 0 ? firstCommit(c.log, tick) - tick : undefined,
      );
      const seen = late.filter((l): l is number => l !== undefined);
      let duplicates = 0;
      for (const tick of measured) duplicates += (await countStored(admin, c.schema, tick)).duplicates;
      const beforeCreated = c.log.effects
        .filter((e) => e.tick < c.createdAt)
        .map((e) => `tick ${clock(e.tick)} (created ${clock(c.createdAt)}) at ${clock(e.committedAt)}`);
      results.push({
        label: c.label,
        late,
        p50: median(seen),
        max: seen.length === 0 ? NaN : Math.max(...seen),
        duplicates,
        beforeCreated,
      });
    }
    return results;
  });
}

function firstCommit(log: EffectLog, tick: number): number {
  return Math.min(...firstPerSchedule(log, tick).map((e) => e.committedAt));
}

type Stored = { rows: number; duplicates: number };
type RoundName = 'A' | 'B' | 'C' | 'D';

interface Round {
  name: RoundName;
  tick: number;
  keel?: { schedulers: number; burst: Burst; stored: Stored };
  pgBoss?: { burst: Burst; stored: Stored };
}

/**
 * Part 2: `many` schedules due at once, on consecutive minute boundaries. A: keel's one scheduler
 * beside pg-boss; B: keel's two schedulers beside pg-boss; C: pg-boss alone; D (once pg-boss has
 * stopped): keel's one scheduler alone.
 */
async function manyAtOnce(admin: pg.Client): Promise<Round[]> {
  return withCleanup(async (defer) => {
    const keelSchema = 'bench_schedule_keel_many';
    const bossSchema = 'bench_schedule_pg_boss_many';
    for (const schema of [keelSchema, bossSchema]) {
      await freshSchema(admin, schema);
      defer(() => dropSchema(admin, schema));
    }
    const keelLogs = { A: new EffectLog(), B: new EffectLog(), D: new EffectLog() };
    const bossLog = new EffectLog();
    const keel = async (round: 'A' | 'B' | 'D', tick: number, schedulers: number) => {
      const running = await startKeel(
        url,
        keelSchema,
        scheduleNames(`${round.toLowerCase()}.`, many),
        cronAt(tick),
        schedulers,
        keelLogs[round],
        onError('keel'),
      );
      // stop() is idempotent: a round stops its schedulers when done, the cleanup in any case.
      defer(() => running.stop());
      return running;
    };
    const keelRound = async (round: 'A' | 'B' | 'D', tick: number, schedulers: number, end: number) => ({
      schedulers,
      burst: burstOf(keelLogs[round], tick, many, end),
      stored: await countStored(admin, keelSchema, tick),
    });
    const bossRound = async (tick: number, end: number) => ({
      burst: burstOf(bossLog, tick, many, end),
      stored: await countStored(admin, bossSchema, tick),
    });
    const warnUnfinished = (round: Round): void => {
      if (round.pgBoss !== undefined && round.pgBoss.burst.fired < many)
        console.log(
          '      ! pg-boss had not finished at the next tick; jobs it made later count for that tick',
        );
    };

    const setupStart = Date.now();
    const boss = await PgBossBurst.fork(url, bossSchema, 'burst_', many, bossLog, onError('pg-boss'));
    defer(() => boss.stop());
    console.log(
      `  (2) pg-boss: ${fmt(many)} queues created in ${fmt((Date.now() - setupStart) / 1000, 1)} s`,
    );
    // Scheduling 500 pg-boss crons and starting keel's scheduler took over 30 s on a loaded run:
    // a round whose tick comes before its contenders are set up measures nothing.
    const a = boundaryFrom(Date.now() + 90_000);
    const [b, c] = [a + minute, a + 2 * minute];
    await boss.schedule(cronAt(a, b, c));
    const keelA = await keel('A', a, 1);
    const setUp = Date.now();
    console.log(
      `      scheduled, workers and schedulers started by ${clock(setUp)} UTC (pg-boss '${cronAt(a, b, c)}', keel '${cronAt(a)}'` +
        ` then '${cronAt(b)}'); round A at ${clock(a)}, B at ${clock(b)}, C at ${clock(c)}`,
    );
    if (setUp > a - 1000) console.log('      ! set-up ran into round A: its figures are not comparable');

    // A: keel's one scheduler beside pg-boss; stopped when done, and B's two start.
    await until(() => keelLogs.A.count(a) >= many, a + 40_000);
    const aKeelEnd = Date.now();
    await keelA.stop();
    const keelB = await keel('B', b, 2);
    if (Date.now() > b - 1000) console.log('      ! round B started late: its figures are not comparable');
    await until(() => bossLog.count(a) >= many, b - 1000);
    const roundA: Round = {
      name: 'A',
      tick: a,
      keel: await keelRound('A', a, 1, aKeelEnd),
      pgBoss: await bossRound(a, Math.min(Date.now(), b)),
    };
    printRound(roundA);
    warnUnfinished(roundA);

    // B: keel's two schedulers beside pg-boss's same schedules again.
    await until(() => keelLogs.B.count(b) >= many && bossLog.count(b) >= many, c - 1000);
    const bEnd = Math.min(Date.now(), c);
    await keelB.stop();
    const roundB: Round = {
      name: 'B',
      tick: b,
      keel: await keelRound('B', b, 2, bEnd),
      pgBoss: await bossRound(b, bEnd),
    };
    printRound(roundB);
    warnUnfinished(roundB);

    // C: pg-boss alone.
    await until(() => bossLog.count(c) >= many, c + 90_000);
    const roundC: Round = { name: 'C', tick: c, pgBoss: await bossRound(c, Date.now()) };
    await boss.stop();
    printRound(roundC);

    // D: keel's one scheduler alone, pg-boss stopped.
    const d = boundaryFrom(Date.now() + 15_000);
    const keelD = await keel('D', d, 1);
    await until(() => keelLogs.D.count(d) >= many, d + 40_000);
    const dEnd = Date.now();
    await keelD.stop();
    const roundD: Round = { name: 'D', tick: d, keel: await keelRound('D', d, 1, dEnd) };
    printRound(roundD);
    return [roundA, roundB, roundC, roundD];
  });
}

function printRound(round: Round): void {
  const line = (label: string, burst: Burst, stored: Stored): string => {
    const split =
      burst.split.size > 1
        ? `, by scheduler ${[...burst.split.entries()]
            .sort(([x], [y]) => x - y)
            .map(([, n]) => fmt(n))
            .join(' / ')}`
        : '';
    return (
      `${label.padEnd(28)} ${fmt(burst.fired)} of ${fmt(burst.expected)} in ${ms(burst.spanMs)} ms ` +
      `(first ${ms(burst.firstMs)} ms, p50 ${ms(burst.p50Ms)} ms${split}) = ${fmt(burst.perSecond)} ticks/s; ` +
      `stored ${fmt(stored.rows)}, duplicates ${fmt(stored.duplicates)}`
    );
  };
  const both = round.keel !== undefined && round.pgBoss !== undefined;
  console.log(`      round ${round.name} (tick ${clock(round.tick)})`);
  if (round.keel !== undefined) {
    const schedulers = round.keel.schedulers === 1 ? 'one scheduler' : `${round.keel.schedulers} schedulers`;
    const label = `keel, ${schedulers}${both ? '' : ', alone'}`;
    console.log(`        ${line(label, round.keel.burst, round.keel.stored)}`);
  }
  if (round.pgBoss !== undefined)
    console.log(
      `        ${line(`pg-boss${both ? '' : ', alone'}`, round.pgBoss.burst, round.pgBoss.stored)}`,
    );
}

/** The bench line of part 2 for a keel burst beside a pg-boss one. */
function burstLine(setting: string, keel: Burst, peer: Burst): string {
  const incomplete = (b: Burst): string => (b.fired < b.expected ? ` (${fmt(b.fired)} fired)` : '');
  return (
    `bench: schedules fired per second, ${fmt(many)} due at one tick, ${setting} (higher is better)` +
    ` | keel ${fmt(keel.perSecond)} ticks/s${incomplete(keel)}` +
    ` | pg-boss ${fmt(peer.perSecond, peer.perSecond < 10 ? 2 : 0)} ticks/s${incomplete(peer)}` +
    ` | ratio ${(keel.perSecond / peer.perSecond).toFixed(2)}`
  );
}

export default async function main(): Promise<void> {
  const runLateness = only === undefined || only === 'lateness';
  const runMany = only === undefined || only === 'many';
  printMethod({ url, ticks, many, settleMs, runLateness, runMany, load: load() });

  const admin = await connectAdmin(url);
  try {
    const late = runLateness ? await lateness(admin) : [];
    if (runLateness) {
      for (const l of late)
        console.log(
          `      ${l.label.padEnd(16)} p50 ${ms(l.p50)} ms, max ${ms(l.max)} ms over ${l.late.filter((x) => x !== undefined).length} of ${ticks} ticks` +
            `; duplicates ${l.duplicates}${l.beforeCreated.length > 0 ? `; before its schedule existed: ${l.beforeCreated.join(', ')}` : ''}`,
        );
      console.log(`      load average ${load()}`);
    }
    const rounds = runMany ? await manyAtOnce(admin) : [];
    if (runMany) console.log(`      load average ${load()}`);

    console.log('');
    if (errors.length > 0) console.log(`note: ${errors.length} errors reported above`);
    const keel = late.find((l) => l.label === 'keel');
    for (const peer of late.filter((l) => l.label !== 'keel')) {
      if (keel === undefined) break;
      for (const [what, k, p] of [
        ['p50', keel.p50, peer.p50],
        ['max', keel.max, peer.max],
      ] as const)
        console.log(
          `bench: how late after its cron tick a recurring job's effect commits, '* * * * *', ${what} of ${ticks} ticks (lower is better) | keel ${ms(k)} ms | ${peer.label} ${ms(p)} ms | ratio ${(p / k).toFixed(2)}`,
        );
    }
    const round = (name: RoundName): Round | undefined => rounds.find((r) => r.name === name);
    const [a, b, c, d] = [round('A'), round('B'), round('C'), round('D')];
    if (a?.keel !== undefined && a.pgBoss !== undefined)
      console.log(burstLine('one keel scheduler, same minute as pg-boss', a.keel.burst, a.pgBoss.burst));
    if (b?.keel !== undefined && b.pgBoss !== undefined)
      console.log(
        burstLine('two keel schedulers sharing the db, same minute as pg-boss', b.keel.burst, b.pgBoss.burst),
      );
    if (d?.keel !== undefined && c?.pgBoss !== undefined)
      console.log(burstLine('one keel scheduler, each alone in its minute', d.keel.burst, c.pgBoss.burst));
  } finally {
    await admin.end();
  }
}
