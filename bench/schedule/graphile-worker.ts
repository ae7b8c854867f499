// graphile-worker's side of bench/schedule (lateness only): a crontab line, run by its runner.
import { Logger, run, runMigrations } from 'graphile-worker';
import { insertEffectSql, type EffectSink } from './effect.ts';

const task = 'bench_tick';

export const graphileHow =
  `run({ crontab: '* * * * * ${task}' }) with its defaults: concurrentJobs 1, a job woken by LISTEN/NOTIFY ` +
  '(pollInterval 2 s behind it); its cron timer fires at each minute + 1 ms and inserts the job; ' +
  'the task makes the effect with helpers.query (its own pool)';

/** Starts a runner in `schema` (which exists, with the effect table) whose crontab fires `* * * * *`. */
export async function startGraphile(
  url: string,
  schema: string,
  name: string,
  log: EffectSink,
  onError: (error: unknown) => void,
): Promise<{ stop(): Promise<void> }> {
  // Errors only: its info lines (each job, each cron run) would be interleaved with the bench's.
  const logger = new Logger(() => (level, message) => {
    if (String(level) === 'error') onError(new Error(`graphile-worker: ${message}`));
  });
  await runMigrations({ connectionString: url, schema, logger });
  const insert = insertEffectSql(schema);
  const runner = await run({
    noHandleSignals: true,
    logger,
    crontab: `* * * * * ${task}`,
    taskList: {
      [task]: async (payload, helpers) => {
        // The cron item's payload carries its tick: `_cron.ts`, an ISO instant.
        const tick = Date.parse((payload as { _cron: { ts: string } })._cron.ts);
        await helpers.query(insert, [name, new Date(tick)]);
        log.record({ schedule: name, tick, committedAt: Date.now() });
      },
    },
    preset: { worker: { connectionString: url, schema } },
  });
  return { stop: () => runner.stop() };
}
