import { migrate, openDb, type Db } from '../../src/db/index.ts';
import type { Envelope } from '../../src/messaging/index.ts';
import {
  WalOutboxRelay,
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  outboxMigrations,
} from '../../src/outbox/index.ts';
import type { Contender, Instance, Publish } from './contender.ts';
import { destination } from './keel.ts';

const names = {
  slotName: 'bench_outbox_wal',
  publicationName: 'bench_outbox_wal',
  prefix: 'bench_outbox_wal',
};

/**
 * keel's WAL outbox: the business transaction writes a logical message (no row), a WalOutboxRelay
 * streams the slot. A second relay stands by (a slot streams to one connection at a time).
 * Needs wal_level=logical.
 */
export function keelWalContender(batchSize: number): Contender {
  return {
    name: 'keel WAL',
    how: `addToWalOutbox + WalOutboxRelay, batchSize ${batchSize}, streamed by logical decoding (a second relay stands by), commit order, breaker (defaults)`,
    async open(schema, url, publish) {
      const db = await openDb({ kind: 'pg', url, schema, poolSize: 10 });
      // Parked messages (none here) would go into the table outbox: the relay needs its table.
      await migrate(db, outboxMigrations);
      // A slot left by an interrupted run would hold its old messages: start from a fresh one.
      await dropWalOutboxSlot(db, names);
      await ensureWalOutboxSlot(db, names);
      return new KeelWalInstance(db, url, schema, publish, batchSize);
    },
  };
}

class KeelWalInstance implements Instance {
  readonly #relays: WalOutboxRelay[] = [];
  readonly #relayDbs: Db[] = [];
  #committed = 0;
  #published = 0;
  constructor(
    readonly db: Db,
    readonly url: string,
    readonly schema: string,
    readonly publish: Publish,
    readonly batchSize: number,
  ) {}

  async commit(messages: readonly Envelope[]): Promise<void> {
    await this.db.transaction((tx) => addToWalOutbox(tx, destination, messages, { prefix: names.prefix }));
    this.#committed += messages.length;
  }

  async startRelays(relays: number): Promise<void> {
    for (let i = 0; i < relays; i++) {
      const db = await openDb({ kind: 'pg', url: this.url, schema: this.schema, poolSize: 2 });
      this.#relayDbs.push(db);
      const publish: Publish = async (to, messages) => {
        await this.publish(to, messages);
        this.#published += messages.length;
      };
      const relay = new WalOutboxRelay(
        db,
        { publish },
        { connectionString: this.url, batchSize: this.batchSize, reconnectMs: 100, ...names },
      );
      relay.events.on('error', ({ error }) => console.error('keel WAL relay error', error));
      this.#relays.push(relay);
      await relay.start();
    }
  }

  /** Messages committed and not yet published (a duplicate after a restart would count twice: none here). */
  async unpublished(): Promise<number> {
    return Math.max(0, this.#committed - this.#published);
  }

  async close(): Promise<void> {
    for (const relay of this.#relays) await relay.stop();
    for (const db of this.#relayDbs) await db.close();
    await dropWalOutboxSlot(this.db, names);
    await this.db.close();
  }
}
