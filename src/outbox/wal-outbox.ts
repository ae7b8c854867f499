import { InvalidArgumentError } from '../errors/index.ts';
import { preparedStatement } from '../db/prepared-statements.ts';
import { writeWithoutWaiting } from '../db/send-without-waiting.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { OutboxExecutor } from './outbox.ts';
import { outboxArguments } from './outbox-arguments.ts';

/** The logical-message prefix the WAL outbox writes under and its relay reads. */
export const defaultWalOutboxPrefix = 'keel_outbox';

export interface AddToWalOutboxOptions {
  /** The logical-message prefix; a relay reads one prefix. Default `keel_outbox`. */
  prefix?: string;
}

/**
 * What one logical message carries: a destination and the messages of one `add`, in order.
 * `v` versions the encoding, so a relay can refuse what a newer writer wrote.
 */
export interface WalOutboxRecord {
  v: 1;
  destination: string;
  messages: Envelope[];
}

// No column back: the message's LSN is of no use here, and a result column costs the driver a parse.
const emit = preparedStatement('SELECT FROM pg_logical_emit_message(true, $1, $2::text)');

/**
 * The WAL outbox: writes messages into the caller's transaction as one transactional logical
 * message (`pg_logical_emit_message`) instead of a table row. It is in the WAL only, so it costs
 * no heap row, no index entries, no later UPDATE or DELETE and no vacuum; logical decoding hands
 * it to `WalOutboxRelay` when the transaction commits, and never if it rolls back.
 *
 * Order: decoding delivers transactions in commit order, so messages reach the relay in the
 * order their transactions committed — for every key at once, with no key locks and no late
 * commits to look back for (the table outbox needs both).
 *
 * Needs PostgreSQL with `wal_level = logical` and the relay's replication slot created before
 * the first `add` (`ensureWalOutboxSlot`, which the relay also runs at start): a message written
 * while no slot exists is in no slot's stream and is never published. PGlite has no logical
 * decoding: use the table outbox (`addToOutbox`) there.
 *
 * In a keel `Tx` the statement travels with the next one or the COMMIT (no round trip of its
 * own); elsewhere it is awaited.
 */
export async function addToWalOutbox(
  tx: OutboxExecutor,
  destination: string,
  messages: Envelope | readonly Envelope[],
  options: AddToWalOutboxOptions = {},
): Promise<void> {
  const list = outboxArguments(tx, destination, messages);
  const prefix = options.prefix ?? defaultWalOutboxPrefix;
  if (typeof prefix !== 'string' || prefix.length === 0) {
    throw new InvalidArgumentError('prefix', 'a non-empty string', prefix);
  }
  if (list.length === 0) return;
  const record: WalOutboxRecord = { v: 1, destination, messages: list as Envelope[] };
  await writeWithoutWaiting(tx, emit, [prefix, JSON.stringify(record)]);
}

/** `walOutbox.add(tx, destination, messages)`: the same as `addToWalOutbox`, as an object to pass around. */
export const walOutbox = { add: addToWalOutbox } as const;
