import { parseArgs } from 'node:util';
import type { Db } from '../db/index.ts';
import { withCliDb, type CliIo } from './cli-io.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { PgQueue } from '../messaging/index.ts';
import { dbConfigFromEnv } from '../db/index.ts';
import { drainWalOutbox, OutboxRelay, outboxStatus, retryParked, walOutboxStatus } from '../outbox/index.ts';
import { defaultWalOutboxSlot } from '../outbox/wal-outbox-slot.ts';

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
      case 'outbox status': {
        const status = await outboxStatus(db);
        io.out(`backlog    ${status.backlog}`);
        io.out(`parked     ${status.parked}`);
        io.out(`published  ${status.published}`);
        io.out(`oldest     ${(status.oldestUnpublishedAgeMs / 1000).toFixed(1)} s`);
        // The WAL outbox, where its slot exists (never on PGlite or without wal_level = logical).
        const slotName = values.slot;
        const wal = await walOutboxStatus(db, slotName === undefined ? {} : { slotName });
        if (wal.exists) {
          io.out(`wal slot   ${slotName ?? defaultWalOutboxSlot} (${wal.active ? 'active' : 'inactive'})`);
          io.out(
            `wal lag    ${wal.lagBytes} bytes${wal.lagBytes < 1024 ? '' : ` (${formatBytes(wal.lagBytes)})`}`,
          );
        } else if (slotName !== undefined) {
          io.out(`wal slot   ${slotName} (no such replication slot)`);
        }
        return 0;
      }
      case 'outbox retry': {
        const count = await retryParked(db, values.id);
        io.out(`${count} parked row(s) will be published again`);
        return 0;
      }
      case 'outbox drain': {
        if (values.slot !== undefined) return drainWal(db, values.slot, io);
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

/**
 * `outbox drain --slot`: every WAL outbox message committed before now, published. With no relay
 * streaming from the slot, this command relays to the PostgreSQL queue itself, as the table
 * drain does.
 */
async function drainWal(db: Db, slotName: string, io: CliIo): Promise<number> {
  const config = dbConfigFromEnv(io.env);
  if (config.kind !== 'pg') {
    io.err('KEEL_DB_FEATURE_MISSING: the WAL outbox needs PostgreSQL (KEEL_DB=pg) with wal_level = logical');
    return 1;
  }
  let last = '';
  const { published } = await drainWalOutbox(db, new PgQueue(db), {
    connectionString: config.url,
    slotName,
    onProgress: ({ bytesLeft, published, relay }) => {
      const line = `draining ${slotName}: ${bytesLeft < 1024 ? `${bytesLeft} bytes` : formatBytes(bytesLeft)} of WAL to go, ${
        relay === 'other' ? 'the running relay publishing' : `published ${published}`
      }`;
      if (line !== last) io.err(line);
      last = line;
    },
  });
  io.out(
    `drained ${slotName}: published ${published} here; the slot is past every message committed before the drain`,
  );
  return 0;
}

/** `1536` → `1.5 KiB`: binary units, one decimal. */
function formatBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]!}`;
}
