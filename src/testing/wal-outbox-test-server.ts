import { migrate, openPgDb, type Db } from '../db/index.ts';
import { dropWalOutboxSlot, ensureWalOutboxSlot, outboxMigrations } from '../outbox/index.ts';
import { startPgServer, type PgServer } from './pg-server.ts';

/** The names one test's WAL outbox uses: a slot, a publication and a prefix of its own. */
export interface WalOutboxTestSlot {
  slotName: string;
  publicationName: string;
  prefix: string;
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
  return {
    server,
    url: server.url,
    db: opened,
    async newSlot(on = opened) {
      slots++;
      const id = `${process.pid}_${slots}`;
      const names = { slotName: `t_${id}`, publicationName: `t_${id}`, prefix: `keel_test_${id}` };
      await ensureWalOutboxSlot(on, names);
      return { ...names, drop: () => dropWalOutboxSlot(on, names) };
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
