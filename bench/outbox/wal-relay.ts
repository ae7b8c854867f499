// The WAL outbox's side of bench/outbox-brokers: messages written with addToWalOutbox, then one
// WalOutboxRelay timed until every one is published. Needs a server with wal_level=logical:
// the bench starts its own (startPgServer, fsync on), since the shared server runs wal_level=replica.
import { migrate, openPgDb, type Db } from '../../src/db/index.ts';
import type { Envelope, Publisher } from '../../src/messaging/index.ts';
import {
  WalOutboxRelay,
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  outboxMigrations,
} from '../../src/outbox/index.ts';
import { startPgServer, type PgServer } from '../../src/testing/index.ts';
import { until } from '../brokers/pair.ts';

export interface WalBench {
  /** Writes `batch` (not timed), then times one relay to `publish` until all of it is published. */
  time(
    destination: string,
    batch: readonly Envelope[],
    publish: Publisher['publish'],
    batchSize: number,
  ): Promise<{ rate: number; cpuMsPer1000: number }>;
  close(): Promise<void>;
}

export async function openWalBench(): Promise<WalBench> {
  const server: PgServer = await startPgServer({ walLevel: 'logical', fsync: true });
  const db: Db = await openPgDb({ url: server.url });
  await migrate(db, outboxMigrations);
  let round = 0;
  return {
    async time(destination, batch, publish, batchSize) {
      const names = { slotName: `bench_${++round}`, publicationName: `bench_${round}` };
      await ensureWalOutboxSlot(db, names);
      try {
        for (let i = 0; i < batch.length; i += 1000)
          await db.transaction((tx) => addToWalOutbox(tx, destination, batch.slice(i, i + 1000)));
        let published = 0;
        const relay = new WalOutboxRelay(
          db,
          { publish },
          { connectionString: server.url, batchSize, ...names },
        );
        relay.events.on('published', ({ messages: sent }) => (published += sent.length));
        // Timed from the moment the server starts streaming: the replication connection's setup
        // (TCP, auth, the slot checks, START_REPLICATION) is a relay's one-time cost, as the raw
        // side's connect is, which bench/brokers does not time either.
        let cpu = process.cpuUsage();
        let start = performance.now();
        relay.events.on('streaming', () => {
          cpu = process.cpuUsage();
          start = performance.now();
        });
        await relay.start();
        await until(() => published, batch.length, 300_000, `WAL relay to ${destination}`);
        const rate = batch.length / ((performance.now() - start) / 1000);
        const used = process.cpuUsage(cpu);
        await relay.stop();
        return { rate, cpuMsPer1000: (used.user + used.system) / batch.length };
      } finally {
        await dropWalOutboxSlot(db, names);
      }
    },
    async close() {
      await db.close();
      await server.stop();
    },
  };
}
