import { migrate, openPgDb, type Db } from '../db/index.ts';
import type { Envelope, Publisher } from '../messaging/index.ts';
import {
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  outboxMigrations,
  walOutboxStatus,
  WalOutboxRelay,
  type WalOutboxRelayOptions,
  type WalOutboxStatus,
} from '../outbox/index.ts';
import { startPgServer, type PgServer } from './pg-server.ts';

/**
 * The names one test's WAL outbox uses — a slot, a publication and a prefix of its own — and what
 * a test does with them, on the `Db` the slot was created on.
 */
export interface WalOutboxTestSlot {
  slotName: string;
  publicationName: string;
  prefix: string;
  /**
   * A relay of this slot on the test server, not started: `reconnectMs` 50 (a standby takes over
   * at once), then `options`.
   */
  readonly relay: (publisher: Publisher, options?: Partial<WalOutboxRelayOptions>) => WalOutboxRelay;
  /** Writes `messages` for `destination` under the slot's prefix, in a transaction of their own. */
  readonly write: (destination: string, messages: Envelope | readonly Envelope[]) => Promise<void>;
  /** `walOutboxStatus` of the slot: whether it exists, whether a relay streams from it, its lag. */
  readonly status: () => Promise<WalOutboxStatus>;
  /** Drops the slot and the publication (waiting for a relay that just stopped to let go). */
  readonly drop: () => Promise<void>;
}

/** A wal_level=logical server for the WAL outbox's tests, and a `Db` on it. */
export interface WalOutboxTestServer extends AsyncDisposable {
  readonly server: PgServer;
  readonly url: string;
  /** Migrated with the outbox's tables: parked messages land in `keel_outbox`. */
  readonly db: Db;
  /**
   * A slot, publication and prefix no other test uses, the slot created (on `db`, or on the
   * given Db's server) before the test writes its first message, as it must be.
   */
  newSlot(on?: Db): Promise<WalOutboxTestSlot>;
  /**
   * The slot, publication and prefix a relay uses when given none (`keel_outbox`), created: for
   * what reads the defaults, such as the `keel outbox` commands. One test at a time may use it.
   */
  defaultSlot(on?: Db): Promise<WalOutboxTestSlot>;
  stop(): Promise<void>;
}

let slots = 0;

/** Starts a server of the test's own (`startPgServer`, wal_level=logical) and opens a migrated `Db` on it. */
export async function startWalOutboxTestServer(): Promise<WalOutboxTestServer> {
  const server = await startPgServer({ walLevel: 'logical' });
  let db: Db | undefined;
  try {
    db = await openPgDb({ url: server.url });
    await migrate(db, outboxMigrations);
  } catch (error) {
    await db?.close();
    await server.stop();
    throw error;
  }
  const opened = db;
  const stop = async (): Promise<void> => {
    await opened.close();
    await server.stop();
  };
  const slot = async (on: Db, names: WalOutboxTestNames): Promise<WalOutboxTestSlot> => {
    await ensureWalOutboxSlot(on, names);
    return testSlot(on, server.url, names);
  };
  return {
    server,
    url: server.url,
    db: opened,
    newSlot(on = opened) {
      slots++;
      const id = `${process.pid}_${slots}`;
      return slot(on, { slotName: `t_${id}`, publicationName: `t_${id}`, prefix: `keel_test_${id}` });
    },
    defaultSlot(on = opened) {
      return slot(on, { slotName: 'keel_outbox', publicationName: 'keel_outbox', prefix: 'keel_outbox' });
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

type WalOutboxTestNames = Pick<WalOutboxTestSlot, 'slotName' | 'publicationName' | 'prefix'>;

function testSlot(db: Db, url: string, names: WalOutboxTestNames): WalOutboxTestSlot {
  return {
    ...names,
    relay: (publisher, options) =>
      new WalOutboxRelay(db, publisher, { connectionString: url, reconnectMs: 50, ...names, ...options }),
    write: async (destination, messages) => {
      await db.transaction((tx) => addToWalOutbox(tx, destination, messages, { prefix: names.prefix }));
    },
    status: () => walOutboxStatus(db, names),
    drop: () => dropWalOutboxSlot(db, names),
  };
}
