// keel's side of bench/schedule: a tick's effect is written in the transaction that moves the
// schedule's row, and the `fired` event (emitted after that commit) times it.
import { migrate, openDb, type Db } from '../../src/db/index.ts';
import { defineSchedule, Scheduler, scheduleMigrations } from '../../src/schedule/index.ts';
import { insertEffectSql, type EffectSink } from './effect.ts';

export interface RunningSchedulers {
  /** Stops every scheduler (a tick in flight commits) and closes its pool. */
  stop(): Promise<void>;
}

/**
 * Starts `count` schedulers of the schedules `names`, all on `cron` (UTC), in `schema` (which
 * exists, with the effect table). Each scheduler has a pool of its own, as separate processes
 * would, which keeps one connection open between ticks a minute apart (`poolMin: 1`, as
 * docs/schedules.md advises); `pollMs` and every other option are keel's defaults.
 */
export async function startKeel(
  url: string,
  schema: string,
  names: readonly string[],
  cron: string,
  count: number,
  log: EffectSink,
  onError: (error: unknown) => void,
): Promise<RunningSchedulers> {
  const insert = insertEffectSql();
  const schedules = names.map((name) =>
    defineSchedule({
      name,
      cron,
      fire: async (tx, tick) => {
        await tx.query(insert, [tick.schedule, tick.at]);
      },
    }),
  );
  const dbs: Db[] = [];
  const schedulers: Scheduler[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const db = await openDb({
        kind: 'pg',
        url,
        schema,
        applicationName: `bench-schedule-keel-${i + 1}`,
        poolMin: 1,
      });
      dbs.push(db);
      if (i === 0) await migrate(db, scheduleMigrations);
      const scheduler = new Scheduler(db, { schedules, name: `scheduler-${i + 1}` });
      const by = i + 1;
      scheduler.events.on('fired', ({ schedule, tick }) =>
        log.record({ schedule, tick: tick.at.getTime(), committedAt: Date.now(), by }),
      );
      scheduler.events.on('failed', ({ error }) => onError(error));
      scheduler.events.on('error', ({ error }) => onError(error));
      schedulers.push(scheduler);
    }
    await Promise.all(schedulers.map((scheduler) => scheduler.start()));
  } catch (error) {
    await Promise.all(schedulers.map((scheduler) => scheduler.stop()));
    await Promise.all(dbs.map((db) => db.close()));
    throw error;
  }
  return {
    async stop() {
      await Promise.all(schedulers.map((scheduler) => scheduler.stop()));
      await Promise.all(dbs.map((db) => db.close()));
    },
  };
}
