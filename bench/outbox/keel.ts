import { migrate, openDb, type Db } from '../../src/db/index.ts';
import type { Envelope } from '../../src/messaging/index.ts';
import { addToOutbox, OutboxRelay, outboxMigrations, outboxStatus } from '../../src/outbox/index.ts';
import type { Contender, Instance, Publish } from './contender.ts';

export const destination = 'bench_outbox';

/** keel's OutboxRelay with its defaults but the batch size, which both contenders share. */
export function keelContender(batchSize: number): Contender {
  return {
    name: 'keel',
    how: `OutboxRelay, batchSize ${batchSize}, next batch claimed while one publishes, NOTIFY wake-up + 1 s poll, per-key order, breaker (defaults)`,
    async open(schema, url, publish) {
      const db = await openDb({ kind: 'pg', url, schema, poolSize: 10 });
      await migrate(db, outboxMigrations);
      // Each relay gets connections of its own, as the hand-rolled poller has its own client:
      // the business transactions' pool queue must not sit in front of the relay's queries.
      const relayDb = (): Promise<Db> => openDb({ kind: 'pg', url, schema, poolSize: 2 });
      return new KeelInstance(db, relayDb, publish, batchSize);
    },
  };
}

class KeelInstance implements Instance {
  readonly #relays: OutboxRelay[] = [];
  readonly #relayDbs: Db[] = [];
  constructor(
    readonly db: Db,
    readonly relayDb: () => Promise<Db>,
    readonly publish: Publish,
    readonly batchSize: number,
  ) {}

  async commit(messages: readonly Envelope[]): Promise<void> {
    await this.db.transaction((tx) => addToOutbox(tx, destination, messages));
  }

  async startRelays(relays: number): Promise<void> {
    for (let i = 0; i < relays; i++) {
      const db = await this.relayDb();
      this.#relayDbs.push(db);
      const relay = new OutboxRelay(db, { publish: this.publish }, { batchSize: this.batchSize });
      relay.events.on('error', ({ error }) => console.error('keel relay error', error));
      this.#relays.push(relay);
      await relay.start();
    }
  }

  async unpublished(): Promise<number> {
    return (await outboxStatus(this.db)).backlog;
  }

  async close(): Promise<void> {
    for (const relay of this.#relays) await relay.stop();
    for (const db of this.#relayDbs) await db.close();
    await this.db.close();
  }
}
