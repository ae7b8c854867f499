// A recurring job on PostgreSQL alone, run by two replicas: each tick fires once, its message
// written with it through the outbox; after an outage, ticks older than the catch-up window are
// skipped and the newest within it fires. The same keel_schedules row serves any number of
// processes: the transaction that fires a tick moves the row to the next one.
//
//   npx tsx examples/07-schedules/main.ts                      # embedded PGlite, in memory (runs ~10 s)
//   DATABASE_URL=postgres://… npx tsx examples/07-schedules/main.ts   # a server (schema keel_example_07)
import { migrate, openPgDb, openPgliteDb, type Db } from 'keel/db';
import { createEnvelope } from 'keel/messaging';
import { addToOutbox, outboxMigrations } from 'keel/outbox';
import {
  defineSchedule,
  readSchedules,
  Scheduler,
  scheduleMigrations,
  type ScheduleTick,
} from 'keel/schedule';
import { sleep, systemClock, type Clock } from 'keel/time';

export interface ExampleOptions {
  log: (line: string) => void;
  db?: Db;
  /** Default the system clock; a test passes a manual one, and `wait` to move it. */
  clock?: Clock;
  /** How the example lets time pass. Default a real sleep. */
  wait?: (ms: number) => Promise<void>;
}

export async function runExample(options: ExampleOptions): Promise<void> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const wait = options.wait ?? ((ms: number) => sleep(ms, { clock }));
  const db = options.db ?? (await openDefault());
  try {
    await migrate(db, [...outboxMigrations, ...scheduleMigrations]);
    const firedBy = new Map<string, string>();
    const reminders = defineSchedule({
      name: 'reminders.send',
      everyMs: 1000,
      // A tick more than 1.5 s old when a scheduler gets to it is skipped; of several within
      // it, the newest fires.
      catchUpWindowMs: 1500,
      // In the tick's transaction: the message is published once, by the relay, after the commit.
      fire: (tx, tick) =>
        addToOutbox(
          tx,
          'reminders',
          createEnvelope({ type: 'reminder.due.v1', payload: { tick: tick.key } }),
        ),
    });
    const replica = (name: string): Scheduler => {
      const scheduler = new Scheduler(db, { schedules: [reminders], clock, name });
      scheduler.events.on('fired', ({ tick }) => void firedBy.set(tick.key, name));
      return scheduler;
    };

    // 1. Two replicas run the same schedule for three and a half seconds.
    const replicas = [replica('replica-a'), replica('replica-b')];
    for (const scheduler of replicas) await scheduler.start();
    await wait(3500);
    const messages = await reminderMessages(db);
    log(
      `${firedBy.size} ticks fired by two replicas; the outbox holds ${messages.length} reminders, ` +
        `${new Set(messages).size === messages.length ? 'one per tick' : 'some twice'}`,
    );

    // 2. Both stop: five seconds without a scheduler. One starts again.
    for (const scheduler of replicas) await scheduler.stop();
    await wait(5000);
    const back = replica('replica-a');
    const firstFired = back.events.once('fired');
    await back.start();
    const { tick } = await firstFired;
    log(`after 5 s down: ${describeCatchUp(tick)}`);
    await back.stop();

    const [row] = await readSchedules(db, ['reminders.send']);
    log(`reminders.send: fired ${row!.fired} ticks, next at ${new Date(row!.nextTick).toISOString()}`);
  } finally {
    if (options.db === undefined) await db.close();
  }
}

function describeCatchUp(tick: ScheduleTick): string {
  const at = tick.at.toISOString();
  if (tick.skippedFrom === undefined) return `${at} fired, nothing skipped`;
  return `ticks from ${tick.skippedFrom.toISOString()} skipped, ${at} fired ${tick.firedAt.getTime() - tick.at.getTime()} ms late`;
}

async function reminderMessages(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ tick: string }>(
    `SELECT payload->>'tick' AS tick FROM keel_outbox WHERE type = 'reminder.due.v1' ORDER BY seq`,
  );
  return rows.map((row) => row.tick);
}

/** Embedded by default; on a server, a schema of the example's own, emptied first so each run starts afresh. */
async function openDefault(): Promise<Db> {
  const url = process.env.DATABASE_URL;
  if (url === undefined) return openPgliteDb({});
  const schema = 'keel_example_07';
  const server = await openPgDb({ url });
  await server.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await server.close();
  return openPgDb({ url, schema });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample({ log: (line) => console.log(line) });
}
