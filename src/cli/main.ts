import { parseArgs } from 'node:util';
import { withCliDb, type CliIo } from './cli-io.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { PgQueue } from '../messaging/index.ts';
import { runOutboxCommand, type OutboxCommand } from './outbox-cli.ts';

export type { CliIo } from './cli-io.ts';

const usage = `keel — operate a keel service's outbox, queues, sagas, flags, streams and schedules

  keel outbox status [--slot <name>]      backlog, parked rows, age of the oldest unpublished row;
                                          the WAL outbox's slot (default keel_outbox) and lag, if it exists
  keel outbox drain                       publish the backlog to the PostgreSQL queue now, with progress
  keel outbox drain --slot <name>         the WAL outbox's: wait until all committed before now is
                                          published (by the relay streaming, else by this command)
  keel outbox retry [--id <uuid> ...]     give parked rows a fresh start
  keel queue depth <queue>                messages waiting in a queue
  keel queue redrive <dead-letter-queue> [--to <queue>] [--limit <n>]
                                          move dead letters back where they came from
  keel saga list | show <id> | retry <id> instances by state, one's history, resume a parked one
                                          (keel saga --help for the options)
  keel flags list | show | set | enable | disable | remove
                                          feature flags (keel flags --help for the options)
  keel stream status [<stream>] | projections <stream> | forget <stream> <projection> | trim ...
                                          PostgreSQL streams: bounds, projections' lag, retention
                                          (keel stream --help for the options)
  keel schedule list | pause|resume|trigger|remove <name>
                                          recurring schedules: next and last tick, failures, a run now
                                          (trigger --wait reports its outcome; keel schedule --help)

The database comes from KEEL_DB (pglite|pg), DATABASE_URL and KEEL_DATA_DIR, as for the app.`;

/** Runs one command; returns the process exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      id: { type: 'string', multiple: true },
      to: { type: 'string' },
      limit: { type: 'string' },
      slot: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [group, command, target] = positionals;
  if (values.help || group === undefined) {
    io.out(usage);
    return group === undefined && !values.help ? 2 : 0;
  }
  return withCliDb(io, async (db) => {
    switch (`${group} ${command ?? ''}`) {
      case 'outbox status':
      case 'outbox retry':
      case 'outbox drain':
        return runOutboxCommand(db, command as OutboxCommand, values, io);
      case 'queue depth': {
        if (target === undefined) throw new InvalidArgumentError('queue', 'a queue name', target);
        io.out(String(await new PgQueue(db).depth(target)));
        return 0;
      }
      case 'queue redrive': {
        if (target === undefined) throw new InvalidArgumentError('dead-letter-queue', 'a queue name', target);
        const limit = values.limit === undefined ? undefined : Number(values.limit);
        const options: { to?: string; limit?: number } = {};
        if (values.to !== undefined) options.to = values.to;
        if (limit !== undefined) options.limit = limit;
        const moved = await new PgQueue(db).redrive(target, options);
        io.out(`redrove ${moved} message(s) from ${target}`);
        return 0;
      }
      default:
        io.err(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
        return 2;
    }
  });
}
