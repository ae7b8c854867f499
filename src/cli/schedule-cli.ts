import { parseArgs } from 'node:util';

import type { Db } from '../db/index.ts';
// The store alone: the keel command runs where croner (an optional peer) is not installed.
import {
  pauseSchedule,
  readSchedules,
  removeSchedule,
  resumeSchedule,
  triggerSchedule,
  type ScheduleRow,
} from '../schedule/schedule-store.ts';
import { withCliDb, type CliIo } from './cli-io.ts';

const usage = `keel schedule — operate recurring schedules (keel/schedule)

  keel schedule list                      each schedule: its timing, next tick, last fired tick,
                                          ticks fired and given up, a failing tick's error
  keel schedule pause <name>              no scheduler fires it until it is resumed
  keel schedule resume <name>             fire it again; ticks due while it was paused are caught
                                          up within its window, older ones skipped
  keel schedule trigger <name>            run it once now, beside its ticks (paused or not): the
                                          next scheduler that defines it fires it, and does not
                                          retry it if it fails
  keel schedule remove <name>             delete its row: a schedule no process defines any more
                                          (a running scheduler that defines it plans it anew)

The database comes from KEEL_DB (pglite|pg), DATABASE_URL and KEEL_DATA_DIR, as for the app.`;

const instant = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

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
  return lines;
}

async function list(db: Db, io: CliIo): Promise<number> {
  const rows = await readSchedules(db);
  if (rows.length === 0) io.err('no schedules');
  const now = Date.now();
  for (const row of rows) for (const line of describeRow(row, now)) io.out(line);
  return 0;
}

const changes = {
  pause: { run: (db: Db, name: string) => pauseSchedule(db, name, Date.now()), done: 'paused' },
  resume: { run: (db: Db, name: string) => resumeSchedule(db, name, Date.now()), done: 'resumed' },
  trigger: {
    run: (db: Db, name: string) => triggerSchedule(db, name, Date.now()),
    done: 'run asked for: the next scheduler that defines it fires it once',
  },
  remove: { run: (db: Db, name: string) => removeSchedule(db, name), done: 'removed' },
} as const;

/** `keel schedule ...`: returns the process exit code. */
export async function runScheduleCli(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { help: { type: 'boolean', short: 'h' } },
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
  if (command === 'list') return withCliDb(io, (db) => list(db, io));
  if (!(command in changes)) {
    io.err(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
    return 2;
  }
  if (name === undefined) {
    io.err(`KEEL_INVALID_ARGUMENT: name: expected the schedule's name (keel schedule ${command} <name>)`);
    return 2;
  }
  const change = changes[command as keyof typeof changes];
  return withCliDb(io, async (db) => {
    if (!(await change.run(db, name))) {
      io.err(`no schedule named ${name} (keel schedule list shows them)`);
      return 1;
    }
    io.out(`${name}: ${change.done}`);
    return 0;
  });
}
