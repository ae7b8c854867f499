import type { Db } from '../db/db.ts';
import { KeelError } from '../errors/index.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { sleep, systemClock, type Clock } from '../time/index.ts';
import { parseLsn } from './lsn.ts';
import { WalOutboxRelay, type WalOutboxRelayOptions } from './wal-outbox-relay.ts';
import { walOutboxSlotNames } from './wal-outbox-slot.ts';

/** The prefix of the mark a drain writes: not the outbox's, so no relay publishes it. */
export const walOutboxDrainPrefix = 'keel_outbox_drain';

export interface WalOutboxDrainProgress {
  /** WAL bytes between the slot's confirmed position and the drain's mark. */
  bytesLeft: number;
  /** Messages the drain's own relay published (0 while another relay streams from the slot). */
  published: number;
  /** Who streams from the slot: this drain's relay, another process's, or nobody yet. */
  relay: 'drain' | 'other' | 'none';
}

export interface DrainWalOutboxOptions extends WalOutboxRelayOptions {
  /** Called after every look at the slot. */
  onProgress?: (progress: WalOutboxDrainProgress) => void;
  /** How often the slot is looked at. Default 100 ms. */
  pollMs?: number;
  clock?: Clock;
  signal?: AbortSignal;
}

/**
 * Waits until every WAL outbox message committed before the call is published, and returns how
 * many this drain published itself. It writes a mark into the WAL (a logical message under
 * another prefix, in a transaction of its own): a relay confirms a position past the mark only
 * once everything committed before it was published or parked, since it publishes in commit
 * order. While another relay streams from the slot the drain only watches; while none does, it
 * runs one (`publisher`, options as `WalOutboxRelay`'s) and stops it when the mark is passed.
 *
 * Fails with `KEEL_NOT_FOUND` when the slot does not exist.
 */
export async function drainWalOutbox(
  db: Db,
  publisher: Publisher,
  options: DrainWalOutboxOptions,
): Promise<{ published: number }> {
  const { slotName } = walOutboxSlotNames(options);
  const clock = options.clock ?? systemClock;
  const pollMs = options.pollMs ?? 100;
  if ((await slotState(db, slotName, 0n)) === undefined) {
    throw new KeelError(
      'KEEL_NOT_FOUND',
      `no replication slot ${slotName}: the WAL outbox was never set up here`,
      {
        details: { slotName },
      },
    );
  }
  const { rows } = await db.query<{ lsn: string }>(
    `SELECT pg_logical_emit_message(true, $1, '')::text AS lsn`,
    [walOutboxDrainPrefix],
  );
  const mark = parseLsn(rows[0]!.lsn);
  let relay: WalOutboxRelay | undefined;
  let published = 0;
  try {
    for (;;) {
      const state = await slotState(db, slotName, mark);
      if (state === undefined) {
        throw new KeelError('KEEL_NOT_FOUND', `replication slot ${slotName} was dropped during the drain`, {
          details: { slotName },
        });
      }
      if (!state.active && relay === undefined) {
        relay = new WalOutboxRelay(db, publisher, { ...options, name: 'wal-outbox-drain' });
        relay.events.on('published', ({ messages }) => (published += messages.length));
        await relay.start();
      }
      options.onProgress?.({
        bytesLeft: state.bytesLeft,
        published,
        relay: relay !== undefined ? 'drain' : state.active ? 'other' : 'none',
      });
      if (state.passed) return { published };
      await sleep(pollMs, { clock, ...(options.signal === undefined ? {} : { signal: options.signal }) });
    }
  } finally {
    await relay?.stop();
  }
}

/** The slot as the drain sees it, or undefined when it does not exist. */
async function slotState(
  db: Db,
  slotName: string,
  mark: bigint,
): Promise<{ active: boolean; passed: boolean; bytesLeft: number } | undefined> {
  const { rows } = await db.query<{ active: boolean; confirmed: string | null }>(
    `SELECT active, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  const confirmed = row.confirmed === null ? 0n : parseLsn(row.confirmed);
  return {
    active: row.active,
    // The mark's own position is where its record starts; its transaction ends after it.
    passed: confirmed > mark,
    bytesLeft: confirmed >= mark ? 0 : Number(mark - confirmed),
  };
}
