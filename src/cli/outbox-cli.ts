import type { Db } from '../db/index.ts';
import { dbConfigFromEnv } from '../db/index.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { describeErrorOnOneLine } from '../messaging/describe-error.ts';
import { PgQueue } from '../messaging/index.ts';
import {
  drainWalOutbox,
  OutboxRelay,
  outboxBacklog,
  outboxStatus,
  retryParked,
  retryParkedById,
  walOutboxStatus,
  type NotParkedState,
} from '../outbox/index.ts';
import { defaultWalOutboxSlot } from '../outbox/wal-outbox-slot.ts';
import type { CliIo } from './cli-io.ts';

/** The options `keel outbox …` reads, as `runCli` parsed them. */
export interface OutboxCliOptions {
  id?: string[] | undefined;
  slot?: string | undefined;
}

export type OutboxCommand = 'status' | 'retry' | 'drain';

/** `keel outbox status | retry | drain`; returns the exit code. */
export function runOutboxCommand(
  db: Db,
  command: OutboxCommand,
  options: OutboxCliOptions,
  io: CliIo,
): Promise<number> {
  switch (command) {
    case 'status':
      return status(db, options.slot, io);
    case 'retry':
      return retry(db, options.id, io);
    case 'drain':
      return options.slot === undefined ? drain(db, io) : drainWal(db, options.slot, io);
  }
}

async function status(db: Db, slotName: string | undefined, io: CliIo): Promise<number> {
  const status = await outboxStatus(db);
  io.out(`backlog    ${status.backlog}`);
  io.out(`parked     ${status.parked}`);
  io.out(`published  ${status.published}`);
  io.out(`oldest     ${(status.oldestUnpublishedAgeMs / 1000).toFixed(1)} s`);
  // The WAL outbox, where its slot exists (never on PGlite or without wal_level = logical).
  const wal = await walOutboxStatus(db, slotName === undefined ? {} : { slotName });
  if (wal.exists) {
    io.out(`wal slot   ${slotName ?? defaultWalOutboxSlot} (${wal.active ? 'active' : 'inactive'})`);
    io.out(`wal lag    ${wal.lagBytes} bytes${wal.lagBytes < 1024 ? '' : ` (${formatBytes(wal.lagBytes)})`}`);
  } else if (slotName !== undefined) {
    io.out(`wal slot   ${slotName} (no such replication slot)`);
  }
  return 0;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const notParked: Record<NotParkedState, string> = {
  unpublished: 'not parked (waiting to be published)',
  published: 'not parked (published)',
  missing: 'not in the outbox (no such message, or published and pruned)',
};

/**
 * With `--id`s, each one not retried is named with where its message is, and the exit code is
 * 1: a mistyped id or a row retried twice would otherwise pass for done in a script.
 */
async function retry(db: Db, ids: readonly string[] | undefined, io: CliIo): Promise<number> {
  if (ids === undefined) {
    io.out(`${await retryParked(db)} parked row(s) will be published again`);
    return 0;
  }
  for (const id of ids) {
    if (!uuid.test(id)) throw new InvalidArgumentError('--id', 'a message id (a UUID)', id);
  }
  const { retried, notRetried } = await retryParkedById(db, ids);
  io.out(`${retried.length} parked row(s) will be published again`);
  for (const { id, state } of notRetried) io.err(`${id}: ${notParked[state]}`);
  return notRetried.length === 0 ? 0 : 1;
}

/**
 * Publishes the backlog to the PostgreSQL queue, batch after batch, until a round publishes
 * nothing. Exits 1 when unpublished rows remain, or when this drain parked rows itself: those
 * are messages it did not get out. Rows parked before it are counted but change nothing. What
 * went wrong is printed: each parked message with its error, and the last error of each
 * destination whose messages stay unpublished.
 */
async function drain(db: Db, io: CliIo): Promise<number> {
  // A service on another broker (KEEL_BROKER, as the shop and its deploy/ files set it) consumes
  // its destinations there: rows drained into the PostgreSQL queue would be marked published and
  // never reach a consumer.
  const broker = io.env.KEEL_BROKER?.trim();
  if (broker !== undefined && broker !== '' && broker !== 'postgres') {
    io.err(
      `KEEL_BROKER is ${broker}: keel outbox drain publishes to the PostgreSQL queue only, where ${broker}'s ` +
        `consumers would never see the messages. Let the service's relay publish the backlog (keel outbox status ` +
        `shows it), or unset KEEL_BROKER if the PostgreSQL queue is where these destinations are consumed.`,
    );
    return 2;
  }
  const relay = new OutboxRelay(db, new PgQueue(db), { batchSize: 500 });
  const parked: string[] = [];
  // Messages whose last publish failed and that were not parked after: by id, the last failure.
  const failed = new Map<string, { destination: string; error: string }>();
  const listeners = [
    relay.events.on('parked', ({ message, error }) => {
      failed.delete(message.id);
      parked.push(`parked ${message.id}: ${withCauses(error)}`);
    }),
    relay.events.on('publish-failed', ({ destination, messages, error }) => {
      for (const { id } of messages) failed.set(id, { destination, error: withCauses(error) });
    }),
    relay.events.on('published', ({ messages }) => {
      for (const { id } of messages) failed.delete(id);
    }),
  ];
  let done = 0;
  try {
    const total = (await outboxBacklog(db)).backlog;
    for (;;) {
      const moved = await relay.relayOnce();
      if (moved === 0) break;
      done += moved;
      io.err(`drained ${done}/${total}`);
    }
  } finally {
    for (const listener of listeners) listener.dispose();
  }
  const left = await outboxBacklog(db);
  io.out(`published ${done}; backlog ${left.backlog}, parked ${left.parked}`);
  for (const [key, count] of countBy(failed.values())) {
    const { destination, error } = JSON.parse(key) as { destination: string; error: string };
    io.err(`publishing ${count} message(s) to ${destination} failed (tried again later): ${error}`);
  }
  if (parked.length > 0) {
    for (const line of parked) io.err(line);
    io.err(
      `parked ${parked.length} row(s) during this drain: keel outbox status, then keel outbox retry once the cause is fixed`,
    );
    return 1;
  }
  return left.backlog === 0 ? 0 : 1;
}

/** An error on one line with its causes: a `PublishError` says which messages, its cause why. */
function withCauses(error: unknown): string {
  const parts = [describeErrorOnOneLine(error)];
  let cause = (error as { cause?: unknown } | null)?.cause;
  while (cause !== undefined && cause !== null && parts.length < 4) {
    parts.push(describeErrorOnOneLine(cause));
    cause = (cause as { cause?: unknown }).cause;
  }
  return parts.join('; cause: ');
}

/** How many times each distinct value occurs, in the order first seen. */
function countBy(values: Iterable<{ destination: string; error: string }>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { destination, error } of values) {
    const key = JSON.stringify({ destination, error });
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
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
