import { parseArgs } from 'node:util';

import type { Db } from '../db/index.ts';
import { InvalidArgumentError } from '../errors/index.ts';
// The store alone: the keel command runs where croner (an optional peer) is not installed.
import {
  pauseSchedule,
  readSchedules,
  removeSchedule,
  resumeSchedule,
  triggerSchedule,
  triggerScheduleRun,
  type ScheduleRow,
} from '../schedule/schedule-store.ts';
import { waitForTriggeredRun, type TriggeredRunOutcome } from '../schedule/triggered-run.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { withCliDb, type CliIo } from './cli-io.ts';

const usage = `keel schedule — operate recurring schedules (keel/schedule)

  keel schedule list                      each schedule: its timing, next tick, last fired tick,
                                          ticks fired and given up, a failing tick's error, a run
                                          by hand pending and the last one's outcome
  keel schedule pause <name>              no scheduler fires it until it is resumed
  keel schedule resume <name>             fire it again; ticks due while it was paused are caught
                                          up within its window, older ones skipped
  keel schedule trigger <name>            run it once now, beside its ticks (paused or not): the
                                          next scheduler that defines it fires it, and does not
                                          retry it if it fails
  keel schedule trigger <name> --wait [--timeout <seconds>]
                                          and wait for that run (default up to 60 s): exit 0 when
                                          it fired, 1 with its error when it failed, 3 when no
                                          scheduler did it in time (it stays asked for)
  keel schedule remove <name>             delete its row: a schedule no process defines any more
                                          (a running scheduler that defines it plans it anew)

The database comes from KEEL_DB (pglite|pg), DATABASE_URL and KEEL_DATA_DIR, as for the app.`;

const instant = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

/** The exit code of `trigger --wait` when no scheduler did the run within the timeout. */
export const stillPendingExitCode = 3;

function describeRow(row: ScheduleRow, now: number): string[] {
  const state =
    row.pausedAt !== null
      ? `paused since ${instant(row.pausedAt)}`
      : row.nextTick <= now
        ? `due for ${((now - row.nextTick) / 1000).toFixed(1)} s`
        : 'waiting';
  const asked = row.triggeredAt === null ? '' : `, run by hand asked at ${instant(row.triggeredAt)}`;
  const lines = [
    `${row.name}  ${row.spec}  ${state}${asked}`,
    `  next ${instant(row.nextTick)}  last ${instant(row.lastTick)}  fired ${row.fired}  given up ${row.failed}`,
  ];
  if (row.lastError !== null)
    lines.push(
      row.attempts === 0
        ? `  last failure: ${row.lastError}`
        : `  attempt ${row.attempts} failed${row.retryAt === null ? '' : `, retried at ${instant(row.retryAt)}`}: ${row.lastError}`,
    );
  if (row.lastTrigger !== null) {
    const done = `  last run by hand ${row.lastTrigger}`;
    const at = instant(row.lastTriggerDoneAt);
    lines.push(
      row.lastTriggerError === null
        ? `${done} fired at ${at}`
        : `${done} failed at ${at}: ${row.lastTriggerError}`,
    );
  }
  return lines;
}

async function list(db: Db, io: CliIo, clock: Clock): Promise<number> {
  const rows = await readSchedules(db);
  if (rows.length === 0) io.err('no schedules');
  const now = clock.now();
  for (const row of rows) for (const line of describeRow(row, now)) io.out(line);
  return 0;
}

const changes = {
  pause: { run: (db: Db, name: string, now: number) => pauseSchedule(db, name, now), done: 'paused' },
  resume: { run: (db: Db, name: string, now: number) => resumeSchedule(db, name, now), done: 'resumed' },
  trigger: {
    run: (db: Db, name: string, now: number) => triggerSchedule(db, name, now),
    done: 'run asked for: the next scheduler that defines it fires it once',
  },
  remove: { run: (db: Db, name: string) => removeSchedule(db, name), done: 'removed' },
} as const;

/**
 * How long `--wait [--timeout <seconds>]` waits, in ms; undefined without `--wait`. A flag where
 * it means nothing, or a timeout that is not a plain decimal (`1e3`, `-1`, `60s`), is refused by name.
 */
function waitMs(command: string, values: { wait?: boolean; timeout?: string }): number | undefined {
  if (values.wait !== true) {
    if (values.timeout !== undefined)
      throw new InvalidArgumentError('--timeout', '--wait beside it: it is how long --wait waits');
    return undefined;
  }
  if (command !== 'trigger')
    throw new InvalidArgumentError('--wait', 'only with trigger (keel schedule trigger <name> --wait)');
  if (values.timeout === undefined) return 60_000;
  if (!/^\d+(\.\d+)?$/.test(values.timeout))
    throw new InvalidArgumentError(
      '--timeout',
      'a number of seconds >= 0, such as 60 or 2.5',
      values.timeout,
    );
  return Number(values.timeout) * 1000;
}

/** What `trigger --wait` prints for the outcome, and its exit code. */
function report(name: string, outcome: TriggeredRunOutcome, io: CliIo): number {
  const run = `run ${outcome.run.run}`;
  switch (outcome.kind) {
    case 'fired':
      io.out(`${name}: ${run} fired at ${outcome.at.toISOString()}`);
      return 0;
    case 'failed':
      io.err(
        `${name}: ${run} failed at ${outcome.at.toISOString()}: ${outcome.error}\n` +
          `(not retried: keel schedule trigger ${name} asks for another run)`,
      );
      return 1;
    case 'pending':
      io.err(
        `${name}: ${run} not picked up within ${outcome.waitedMs / 1000} s: no scheduler that defines ` +
          'the schedule has done it. The request stays pending: the next one that looks fires it ' +
          '(keel schedule list shows it)',
      );
      return stillPendingExitCode;
    case 'removed':
      io.err(`${name}: the schedule's row was removed while ${run} was pending: the run will not happen`);
      return 1;
    case 'unknown':
      io.err(
        outcome.reason === 'overtaken'
          ? `${name}: ${run} was done, but a later run by hand was done too before this command looked, ` +
              "and the row keeps only the last one's outcome"
          : `${name}: ${run} was done by a scheduler of an earlier keel, which records no outcome ` +
              "(keel schedule list shows the schedule's counts)",
      );
      return 1;
  }
}

/** `trigger <name> --wait`: asks for the run, then waits for it and reports what became of it. */
async function triggerAndWait(
  db: Db,
  name: string,
  wait: { timeoutMs: number; clock: Clock },
  io: CliIo,
): Promise<number> {
  const run = await triggerScheduleRun(db, name, wait.clock.now());
  if (run === undefined) {
    io.err(`no schedule named ${name} (keel schedule list shows them)`);
    return 1;
  }
  io.err(
    `${name}: run ${run.run} asked for at ${run.askedAt.toISOString()}; waiting up to ` +
      `${wait.timeoutMs / 1000} s for a scheduler to do it`,
  );
  return report(name, await waitForTriggeredRun(db, run, wait), io);
}

export interface ScheduleCliOptions {
  /** What `now` is when the command writes and how long `--wait` waits. Default the system clock. */
  clock?: Clock;
}

/** `keel schedule ...`: returns the process exit code. */
export async function runScheduleCli(
  argv: readonly string[],
  io: CliIo,
  options: ScheduleCliOptions = {},
): Promise<number> {
  const clock = options.clock ?? systemClock;
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        wait: { type: 'boolean' },
        timeout: { type: 'string' },
      },
    });
  } catch (error) {
    io.err(`${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  const { positionals, values } = parsed;
  const [group, command, name] = positionals;
  if (group !== 'schedule' || command === undefined || values.help) {
    io.out(usage);
    return values.help ? 0 : 2;
  }
  let timeoutMs;
  try {
    timeoutMs = waitMs(command, values);
  } catch (error) {
    io.err(`${(error as InvalidArgumentError).code}: ${(error as Error).message}`);
    return 2;
  }
  if (command === 'list') return withCliDb(io, (db) => list(db, io, clock));
  if (!(command in changes)) {
    io.err(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
    return 2;
  }
  if (name === undefined) {
    io.err(`KEEL_INVALID_ARGUMENT: name: expected the schedule's name (keel schedule ${command} <name>)`);
    return 2;
  }
  if (timeoutMs !== undefined)
    return withCliDb(io, (db) => triggerAndWait(db, name, { timeoutMs, clock }, io));
  const change = changes[command as keyof typeof changes];
  return withCliDb(io, async (db) => {
    if (!(await change.run(db, name, clock.now()))) {
      io.err(`no schedule named ${name} (keel schedule list shows them)`);
      return 1;
    }
    io.out(`${name}: ${change.done}`);
    return 0;
  });
}
