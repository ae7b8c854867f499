// The child process of PgBossBurst: pg-boss with a queue, a worker and a schedule for each of K
// names. Arguments: url, schema, name prefix, K. Talks to the parent over IPC only.
import { scheduleNames, type FromBurst, type ToBurst } from './pg-boss-burst.ts';
import { PgBossSchedules } from './pg-boss.ts';

const [url, schema, prefix, count] = process.argv.slice(2);
if (url === undefined || schema === undefined || prefix === undefined || count === undefined)
  throw new Error('usage: pg-boss-burst-process <url> <schema> <prefix> <count>');

const send = (message: FromBurst): void => {
  if (process.connected) process.send?.(message);
};
const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));

const boss = await PgBossSchedules.start(
  url,
  schema,
  scheduleNames(prefix, Number(count)),
  { record: (effect) => send({ kind: 'effect', effect }) },
  (error) => send({ kind: 'error', message: describe(error) }),
);

let stopping: Promise<void> | undefined;
const stop = (): Promise<void> =>
  (stopping ??= boss.stop().finally(() => {
    send({ kind: 'stopped' });
    if (process.connected) process.disconnect?.();
    // Nothing should keep the process up now; if something does, it still ends.
    setTimeout(() => process.exit(0), 2000).unref();
  }));

process.on('message', (message: ToBurst) => {
  if (message.kind === 'schedule')
    void boss.schedule(message.cron).then(
      () => send({ kind: 'scheduled' }),
      (error: unknown) => send({ kind: 'error', message: describe(error) }),
    );
  else void stop();
});
// The parent went away without a word: stop, so no worker keeps polling a dropped schema.
process.on('disconnect', () => void stop());
send({ kind: 'ready' });
