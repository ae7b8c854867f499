// The method bench/schedule prints before it measures anything.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fmt } from './figures.ts';
import { graphileHow } from './graphile-worker.ts';
import { pgBossHow } from './pg-boss.ts';

export interface MethodOptions {
  url: string;
  ticks: number;
  many: number;
  settleMs: number;
  runLateness: boolean;
  runMany: boolean;
  /** The load average at the start, as printed. */
  load: string;
}

const version = (name: string): string =>
  (
    JSON.parse(readFileSync(new URL(`../../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as {
      version: string;
    }
  ).version;

export function printMethod(o: MethodOptions): void {
  const cpu = os.cpus();
  console.log('bench/schedule — method');
  console.log(
    `  node ${process.version}, ${cpu.length} cores (${cpu[0]?.model ?? '?'}), load average ${o.load} at start; PostgreSQL at ${new URL(o.url).host}`,
  );
  console.log(
    `  keel beside pg-boss ${version('pg-boss')}${o.runLateness ? ` and graphile-worker ${version('graphile-worker')} (part 1 only)` : ''}; each in a fresh schema of its own on the same server`,
  );
  const minutes = (o.runLateness ? o.ticks + 1 : 0) + (o.runMany ? 5 : 0);
  console.log(`  minute crons, so the clock sets the pace: this run takes about ${minutes} minutes`);
  console.log(
    '  the effect, the same for all: one INSERT INTO bench_effects (schedule, tick); keel makes it in the tick’s',
  );
  console.log(
    '  transaction (fire(tx, tick)), the peers in the job’s handler; an effect’s lateness = Date.now() just after its',
  );
  console.log('  commit returned, in the process that made it − the tick’s instant (one machine, one clock)');
  if (o.runLateness)
    console.log(
      `  (1) lateness: one '* * * * *' schedule per contender, all on the same ${o.ticks} ticks (BENCH_TICKS), the first at the first\n` +
        `      minute boundary ${o.settleMs / 1000} s or more after set-up; p50 and max over the ticks. Takes about ${o.ticks + 1} minutes.`,
    );
  if (o.runMany)
    console.log(
      `  (2) ${fmt(o.many)} schedules (BENCH_SCHEDULES) due at one minute boundary: span = the tick to the last effect's commit,\n` +
        `      ticks/s = ${fmt(o.many)} / span. Four rounds on minute boundaries: A, keel's one Scheduler and pg-boss due in the\n` +
        `      same minute; B, the next minute, keel's two Schedulers (a pool each, as two processes would have) and pg-boss;\n` +
        `      C, the next, pg-boss alone; D, once pg-boss has stopped, keel's one Scheduler alone. keel's rounds have\n` +
        `      ${fmt(o.many)} schedules each of their own; pg-boss's same ${fmt(o.many)} are due at A, B and C. The crons name those\n` +
        `      minutes ('37 20 * * *'), so nothing is due before. pg-boss runs in a child process (its ${fmt(o.many)} workers poll\n` +
        `      all the time), keel in this one. Takes about 5 minutes (pg-boss's ${fmt(o.many)} queues are created first).`,
    );
  console.log('  contenders:');
  console.log(
    '    keel             new Scheduler(db, { schedules }) with its defaults (pollMs 30 000: it sleeps until the next tick',
  );
  console.log(
    "                     and fires it), defineSchedule({ name, cron, fire }) (UTC, catchUp 'latest'); keel's pool: 10,",
  );
  console.log(
    '                     keeping one connection open while idle (poolMin 1, as docs/schedules.md advises a scheduler)',
  );
  console.log(`    pg-boss          ${pgBossHow}`);
  if (o.runLateness) console.log(`    graphile-worker  ${graphileHow}`);
  console.log(
    "  pg-boss's schedules: the monitor runs every 1 s at best, behind a debounce (`now() - cron_on > 1 s`) that skips a\n" +
      '  run coming a hair early, so runs are 1 s and at times 2 s apart; a due tick goes through its send-it queue (50 jobs\n' +
      '  a fetch, a fetch a second) before the schedule’s own job exists, which its worker fetches within 0.5 s. One job per\n' +
      '  schedule a minute (a 60 s singleton): sub-minute schedules cannot be expressed, so both parts use minute crons.\n' +
      '  A schedule created mid-minute sends that minute’s tick at once (under 60 s old); part 1 reports such effects and\n' +
      '  does not measure them. Its tick is the last one at or before the job’s creation (the job does not carry it).',
  );
  console.log('  ratio: lateness peer / keel, ticks/s keel / peer: above 1 means keel is ahead\n');
}
