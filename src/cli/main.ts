import { parseArgs } from 'node:util';
import { withCliDb, type CliIo } from './cli-io.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { PgQueue } from '../messaging/index.ts';
import { OutboxRelay, outboxStatus, retryParked } from '../outbox/index.ts';

export type { CliIo } from './cli-io.ts';

const usage = `keel — operate a keel service's outbox, queues and sagas

  keel outbox status                      backlog, parked rows, age of the oldest unpublished row
  keel outbox drain                       publish the backlog to the PostgreSQL queue now, with progress
  keel outbox retry [--id <uuid> ...]     give parked rows a fresh start
  keel queue depth <queue>                messages waiting in a queue
  keel queue redrive <dead-letter-queue> [--to <queue>] [--limit <n>]
                                          move dead letters back where they came from
  keel saga list | show <id> | retry <id> instances by state, one's history, resume a parked one
                                          (keel saga --help for the options)

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
      case 'outbox status': {
        const status = await outboxStatus(db);
        io.out(`backlog    ${status.backlog}`);
        io.out(`parked     ${status.parked}`);
        io.out(`published  ${status.published}`);
        io.out(`oldest     ${(status.oldestUnpublishedAgeMs / 1000).toFixed(1)} s`);
        return 0;
      }
      case 'outbox retry': {
        const count = await retryParked(db, values.id);
        io.out(`${count} parked row(s) will be published again`);
        return 0;
      }
      case 'outbox drain': {
        const relay = new OutboxRelay(db, new PgQueue(db), { batchSize: 500 });
        const total = (await outboxStatus(db)).backlog;
        let done = 0;
        for (;;) {
          const moved = await relay.relayOnce();
          if (moved === 0) break;
          done += moved;
          io.err(`drained ${done}/${total}`);
        }
        const left = await outboxStatus(db);
        io.out(`published ${done}; backlog ${left.backlog}, parked ${left.parked}`);
        return left.backlog === 0 ? 0 : 1;
      }
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
