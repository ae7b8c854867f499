// pg-boss's side of bench/schedule, configured as a user who wants schedules on time would.
//
// How a pg-boss 10 schedule runs: every cronMonitorIntervalSeconds the instance that wins a
// debounce on `version.cron_on` reads every schedule and, for each whose last tick is under 60 s
// old, inserts a job into its internal `__pgboss__send-it` queue (one per schedule a minute,
// by singleton key). A worker of that queue, polling every cronWorkerIntervalSeconds and taking
// 50 at a time, inserts the schedule's own job; the application's `work()` worker, polling every
// pollingIntervalSeconds, fetches it and runs the handler. A schedule is a queue (its name is the
// queue's, one schedule a queue in v10), so K schedules are K queues and K `work()` workers.
import { Cron } from 'croner';
import PgBoss from 'pg-boss';
import pg from 'pg';
import { insertEffectSql, type EffectSink } from './effect.ts';

/** The cron monitor and the send-it worker at their minimum, 1 s (defaults 30 s and 5 s). */
export const bossOptions = { cronMonitorIntervalSeconds: 1, cronWorkerIntervalSeconds: 1 } as const;
/** The worker's polling at its minimum, 0.5 s (default 2 s); metadata for the job's creation time. */
export const workOptions = { pollingIntervalSeconds: 0.5, batchSize: 1, includeMetadata: true } as const;

export const pgBossHow =
  'new PgBoss({ cronMonitorIntervalSeconds: 1, cronWorkerIntervalSeconds: 1 }) (both at their minimum; defaults 30 and 5), ' +
  "createQueue + schedule(name, cron, {}, { tz: 'UTC' }) + work(name, { pollingIntervalSeconds: 0.5 (its minimum; default 2), batchSize 1 }) per schedule; " +
  "the handler makes the effect on the application's own pool (max 10); pg-boss's pool: its default (10)";

/** The last tick of `cron` (UTC) at or before `ms`: the tick pg-boss's monitor sent a job for. */
export function tickAtOrBefore(cron: string, ms: number): number {
  const previous = new Cron(cron, { paused: true, timezone: 'UTC' }).previousRuns(1, new Date(ms + 1))[0];
  if (previous === undefined) throw new Error(`no tick of ${cron} before ${new Date(ms).toISOString()}`);
  return previous.getTime();
}

/**
 * One pg-boss instance with a queue for each of `names`; `schedule` schedules them all and then
 * starts a worker for each. The workers come last: K workers polling every 0.5 s keep pg-boss's
 * pool busy, and `schedule()` calls queued behind their fetches took a minute for 500.
 */
export class PgBossSchedules {
  readonly #boss: PgBoss;
  readonly #effects: pg.Pool;
  readonly #names: readonly string[];
  readonly #insert: string;
  readonly #log: EffectSink;

  private constructor(
    boss: PgBoss,
    effects: pg.Pool,
    names: readonly string[],
    schema: string,
    log: EffectSink,
  ) {
    this.#boss = boss;
    this.#effects = effects;
    this.#names = names;
    this.#insert = insertEffectSql(schema);
    this.#log = log;
  }

  /** Starts pg-boss in `schema` (which exists, with the effect table) and creates the queues. */
  static async start(
    url: string,
    schema: string,
    names: readonly string[],
    log: EffectSink,
    onError: (error: unknown) => void,
  ): Promise<PgBossSchedules> {
    const boss = new PgBoss({
      connectionString: url,
      schema,
      application_name: 'bench-schedule-pg-boss',
      ...bossOptions,
    });
    boss.on('error', onError);
    await boss.start();
    const effects = new pg.Pool({
      connectionString: url,
      max: 10,
      application_name: 'bench-schedule-pg-boss-app',
    });
    for (const name of names) await boss.createQueue(name);
    return new PgBossSchedules(boss, effects, names, schema, log);
  }

  /** Schedules every queue on `cron` (UTC), then starts its worker. */
  async schedule(cron: string): Promise<void> {
    for (const name of this.#names) await this.#boss.schedule(name, cron, {}, { tz: 'UTC' });
    for (const name of this.#names)
      await this.#boss.work(name, workOptions, async (jobs) => {
        for (const job of jobs) {
          const tick = tickAtOrBefore(cron, job.createdOn.getTime());
          await this.#effects.query(this.#insert, [job.name, new Date(tick)]);
          this.#log.record({ schedule: job.name, tick, committedAt: Date.now() });
        }
      });
  }

  async stop(): Promise<void> {
    await this.#boss.stop({ graceful: false, wait: true, timeout: 5000 });
    await this.#effects.end();
  }
}
