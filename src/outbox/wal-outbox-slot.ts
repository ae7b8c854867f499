import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { sleep } from '../time/index.ts';

/** The replication slot and publication a WAL outbox relay reads through. */
export interface WalOutboxSlotOptions {
  /** The logical replication slot. Default `keel_outbox`. */
  slotName?: string;
  /**
   * The publication pgoutput is started with. It lists no tables (the relay wants the logical
   * messages only), but pgoutput needs one by name. Default `keel_outbox`.
   */
  publicationName?: string;
}

export const defaultWalOutboxSlot = 'keel_outbox';

/** PostgreSQL's rule for slot names; publications follow it here too, so neither needs quoting. */
const namePattern = /^[a-z0-9_]{1,63}$/;

export function walOutboxSlotNames(options: WalOutboxSlotOptions = {}): {
  slotName: string;
  publicationName: string;
} {
  const slotName = options.slotName ?? defaultWalOutboxSlot;
  const publicationName = options.publicationName ?? defaultWalOutboxSlot;
  for (const [field, value] of [
    ['slotName', slotName],
    ['publicationName', publicationName],
  ] as const) {
    if (typeof value !== 'string' || !namePattern.test(value)) {
      throw new InvalidArgumentError(field, 'lower-case letters, digits and _ (at most 63)', value);
    }
  }
  return { slotName, publicationName };
}

/**
 * Creates the WAL outbox's publication and replication slot if they do not exist; returns
 * whether it created the slot. Run it before the first `addToWalOutbox` — at deploy, beside the
 * migrations (not inside one: PostgreSQL creates a slot only outside a transaction that wrote) —
 * since a message written while no slot exists is never decoded for the relay. `WalOutboxRelay`
 * runs it at start too.
 *
 * Fails with `KEEL_DB_FEATURE_MISSING` unless the server runs with `wal_level = logical`.
 */
export async function ensureWalOutboxSlot(
  db: Queryable,
  options: WalOutboxSlotOptions = {},
): Promise<boolean> {
  const { slotName, publicationName } = walOutboxSlotNames(options);
  const { rows } = await db.query<{ wal_level: string }>(`SELECT current_setting('wal_level') AS wal_level`);
  const walLevel = rows[0]?.wal_level;
  if (walLevel !== 'logical') {
    throw new KeelError(
      'KEEL_DB_FEATURE_MISSING',
      `the WAL outbox needs wal_level = logical; this server runs wal_level = ${String(walLevel)} (set it in postgresql.conf and restart, or use the table outbox)`,
      { details: { setting: 'wal_level', value: walLevel } },
    );
  }
  await ignoreDuplicate(() => db.query(`CREATE PUBLICATION ${publicationName}`));
  const existing = await db.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [slotName]);
  if (existing.rows.length > 0) return false;
  const created = await ignoreDuplicate(async () => {
    await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slotName]);
    return true;
  });
  return created === true;
}

/** Drops the slot (and with it the WAL it holds back) and the publication; for tests and teardown. */
export async function dropWalOutboxSlot(db: Queryable, options: WalOutboxSlotOptions = {}): Promise<void> {
  const { slotName, publicationName } = walOutboxSlotNames(options);
  // A relay that just stopped may hold the slot for a moment more, until its server process exits.
  for (let attempt = 1; ; attempt++) {
    try {
      await db.query(
        `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`,
        [slotName],
      );
      break;
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code !== '55006' || attempt >= 50) throw error;
      await sleep(100);
    }
  }
  await db.query(`DROP PUBLICATION IF EXISTS ${publicationName}`);
}

export interface WalOutboxStatus {
  /** Whether the slot exists. */
  exists: boolean;
  /** Whether a relay is streaming from it now. */
  active: boolean;
  /**
   * WAL bytes between what the relay confirmed published and the server's current position: an
   * upper bound of the backlog, in bytes (other tables' writes count too). The slot holds back
   * that much WAL from being recycled.
   */
  lagBytes: number;
}

/** The WAL outbox's health in numbers: for `keel outbox status` and the metrics endpoint. */
export async function walOutboxStatus(
  db: Queryable,
  options: WalOutboxSlotOptions = {},
): Promise<WalOutboxStatus> {
  const { slotName } = walOutboxSlotNames(options);
  const { rows } = await db.query<{ active: boolean; lag: string | null }>(
    `SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag
     FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  const row = rows[0];
  if (row === undefined) return { exists: false, active: false, lagBytes: 0 };
  return { exists: true, active: row.active, lagBytes: Math.max(0, Number(row.lag ?? 0)) };
}

/** Runs `fn`; a `duplicate_object` error (42710: another process created it first) counts as done. */
async function ignoreDuplicate<T>(fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === '42710') return undefined;
    throw error;
  }
}
