// A scheduler in a child process, for the scheduler chaos test: it fires `chaos.every` (a tick
// every KEEL_CHAOS_EVERY_MS, every tick caught up however late) into chaos_ticks, pausing a
// random few ms inside each tick's transaction so that a SIGKILL often lands between the tick's
// write and its commit. It prints "started" once running; SIGTERM stops it (the tick in flight
// commits) and it exits 0.
import { writeSync } from 'node:fs';
import { openPgDb } from '../../src/db/index.ts';
import { defineSchedule, Scheduler } from '../../src/schedule/index.ts';

const say = (line: object): void => void writeSync(1, JSON.stringify(line) + '\n');
const db = await openPgDb({
  url: process.env.DATABASE_URL!,
  schema: process.env.KEEL_CHAOS_SCHEMA!,
  poolSize: 2,
});
const schedule = defineSchedule({
  name: 'chaos.every',
  everyMs: Number(process.env.KEEL_CHAOS_EVERY_MS),
  catchUp: 'each',
  catchUpWindowMs: Infinity,
  fire: async (tx, tick) => {
    await tx.query('INSERT INTO chaos_ticks (key, at, pid) VALUES ($1, $2, $3)', [
      tick.key,
      tick.at.toISOString(),
      process.pid,
    ]);
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 30));
  },
});
const scheduler = new Scheduler(db, { schedules: [schedule], pollMs: 500 });
scheduler.events.on('error', ({ error }) => say({ event: 'error', error: String(error) }));
scheduler.events.on('failed', ({ error }) => say({ event: 'failed', error: String(error) }));
await scheduler.start();
say({ event: 'started', pid: process.pid });
process.once('SIGTERM', () => {
  void scheduler
    .stop({ drainMs: 5000 })
    .then(() => db.close())
    .then(() => process.exit(0));
});
