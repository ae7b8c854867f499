// Chaos: the WAL outbox relay, in a child process, is SIGKILLed mid-stream twice (each time after
// it reported some published batches, while writers keep committing), then a last relay runs to
// the end. Publishing to the PostgreSQL queue (on the same logical server) and to RabbitMQ, a
// consumer applies each message's effect through the inbox. Every committed message's effect
// must exist exactly once (the slot loses nothing; the inbox absorbs the duplicates a killed
// relay leaves at the broker), and per key the effects come in commit order. How many duplicates
// reached the broker is printed.
//
// Real processes and real time (test/chaos). The PostgreSQL server is the test's own
// (startPgServer, wal_level=logical); RabbitMQ is the one at 127.0.0.1:5672 (or
// KEEL_RABBITMQ_URL), and a missing one fails the RabbitMQ case by name, never a skip.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openPgDb, type Db } from '../../src/db/index.ts';
import {
  createEnvelope,
  PgQueue,
  pgQueueMigrations,
  type Envelope,
  type MessageBroker,
} from '../../src/messaging/index.ts';
import { RabbitMqBroker } from '../../src/messaging/adapters/rabbitmq/index.ts';
import {
  deleteQueues,
  rabbitMqUrl,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import type { QueueConsumer } from '../../src/messaging/queue-consumer.ts';
import {
  addToWalOutbox,
  dropWalOutboxSlot,
  ensureWalOutboxSlot,
  inboxMigrations,
  inboxOnce,
  outboxMigrations,
} from '../../src/outbox/index.ts';
import { startPgServer, type PgServer } from '../../src/testing/index.ts';
import { until } from '../until.ts';

const child = fileURLToPath(new URL('./fixtures/wal-relay-child.ts', import.meta.url));

/** Messages committed per case, by 4 writers on 8 keys each, in transactions of 1 to 3. */
const total = 2000;
const writers = 4;
const keysPerWriter = 8;
/** The relay's batch: small, so that a kill lands between many publishes. */
const batchSize = 20;
/** Published batches each doomed relay reports before it is killed. */
const killAfter = [8, 12] as const;
const partitions = 4;

let server: PgServer;
let db: Db;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  server = await startPgServer({ walLevel: 'logical' });
  db = await openPgDb({ url: server.url, poolSize: 12 });
  await migrate(db, [
    ...pgQueueMigrations,
    // The relay parks a message it cannot publish in the table outbox.
    ...outboxMigrations,
    ...inboxMigrations,
    { id: 'wal_chaos_changes', sql: 'CREATE TABLE changes (message_ids uuid[] NOT NULL)' },
    {
      id: 'wal_chaos_effects',
      // No unique key: only the inbox stands between a duplicate and a second effect row.
      sql: 'CREATE TABLE effects (target text NOT NULL, message_id uuid NOT NULL, key text NOT NULL, n int NOT NULL, at bigserial)',
    },
  ]);
}, 30_000);

afterEach(() => {
  // A failed case leaves no relay running.
  for (const proc of children) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  children.clear();
});

afterAll(async () => {
  await db?.close();
  await server?.stop();
});

interface RelayChild {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Messages it reported published. */
  published(): number;
  /** Resolves once it printed `count` lines of `event`; rejects if it exits first. */
  seen(event: string, count?: number): Promise<void>;
}

function runRelay(target: 'pg' | 'rabbitmq', env: Record<string, string>): RelayChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, target], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(proc);
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: proc.stdout }).on('line', (text) => {
    lines.push(JSON.parse(text) as Record<string, unknown>);
    for (const check of [...waiters]) check();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const count = (event: string): number => lines.filter((line) => line.event === event).length;
  return {
    proc,
    lines,
    exit,
    published: () =>
      lines.filter((line) => line.event === 'published').reduce((sum, line) => sum + Number(line.count), 0),
    seen: (event, wanted = 1) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (count(event) < wanted) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
        void exit.then(({ code, signal }) => {
          if (!waiters.delete(check)) return;
          reject(new Error(`relay child exited (${code ?? signal}) before ${wanted} "${event}" lines`));
        });
      }),
  };
}

/**
 * Writers of the WAL outbox: each owns `keysPerWriter` keys of its own and commits their messages,
 * round robin, one small transaction at a time, so each key's commit order is its `n` order.
 */
class Writers {
  readonly committed: string[] = [];
  readonly #next = new Map<string, number>();
  #txs = 0;

  constructor(
    private readonly destination: string,
    private readonly prefix: string,
  ) {}

  /** Every writer commits `perWriter` more messages, pausing `pauseMs` after each transaction. */
  async write(perWriter: number, pauseMs: number): Promise<void> {
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let written = 0; written < perWriter;) {
          const txNumber = this.#txs++;
          const size = Math.min(perWriter - written, 1 + (txNumber % 3));
          const messages = Array.from({ length: size }, (_, i) =>
            this.#message(`k${w * keysPerWriter + ((written + i) % keysPerWriter)}`),
          );
          await db.transaction(async (tx) => {
            // The state change the messages announce, written after them or before them: an
            // application does both, and the WAL then holds commit records back to back.
            const change = (): Promise<unknown> =>
              tx.query('INSERT INTO changes (message_ids) VALUES ($1)', [messages.map((m) => m.id)]);
            if (txNumber % 2 === 0) await change();
            await addToWalOutbox(tx, this.destination, messages, { prefix: this.prefix });
            if (txNumber % 2 === 1) await change();
          });
          for (const message of messages) this.committed.push(message.id);
          written += size;
          if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
        }
      }),
    );
  }

  #message(key: string): Envelope {
    const n = this.#next.get(key) ?? 0;
    this.#next.set(key, n + 1);
    return createEnvelope({ type: 'wal.chaos.v1', key, payload: { key, n } });
  }
}

interface Target {
  name: string;
  kind: 'pg' | 'rabbitmq';
  /** The broker the test's consumer reads from, and the child's extra environment. */
  open: (
    destination: string,
  ) => Promise<{ broker: MessageBroker; env: Record<string, string>; cleanUp: () => Promise<void> }>;
  /** Messages left at the broker once the consumer is idle. */
  left?: (broker: MessageBroker, destination: string) => Promise<number>;
}

const targets: Target[] = [
  {
    name: 'the PostgreSQL queue',
    kind: 'pg',
    open: async () => ({ broker: new PgQueue(db), env: {}, cleanUp: async () => undefined }),
    left: (broker, destination) => (broker as PgQueue).depth(destination),
  },
  {
    name: 'RabbitMQ (per-key)',
    kind: 'rabbitmq',
    open: async (destination) => {
      await requireRabbitMq();
      const broker = new RabbitMqBroker({
        url: rabbitMqUrl,
        name: `keel-wal-chaos-consumer-${randomBytes(3).toString('hex')}`,
        ordering: 'per-key',
        partitions,
      });
      return {
        broker,
        env: { KEEL_RABBITMQ_URL: rabbitMqUrl, KEEL_CHAOS_PARTITIONS: String(partitions) },
        cleanUp: async () => {
          const queues = [...broker.declaredQueues(), ...broker.queuesOf(destination)];
          await broker.close();
          await deleteQueues(queues);
        },
      };
    },
  },
];

describe.each(targets)(
  'chaos: a WAL outbox relay publishing to $name, SIGKILLed mid-stream twice',
  (target) => {
    it('loses no committed message and applies each effect once; duplicates stop at the inbox', async () => {
      const started = Date.now();
      const tag = `${target.kind}_${randomBytes(4).toString('hex')}`;
      const names = {
        slotName: `chaos_${tag}`,
        publicationName: `chaos_${tag}`,
        prefix: `keel_chaos_${tag}`,
      };
      const destination = `wal_chaos_${tag}`;
      const consumerName = `wal-chaos-${target.kind}`;
      // The slot exists before the first add: a message written without one is in no slot's stream.
      await ensureWalOutboxSlot(db, names);
      const { broker, env: brokerEnv, cleanUp } = await target.open(destination);
      const env = {
        ...brokerEnv,
        KEEL_CHAOS_PG_URL: server.url,
        KEEL_CHAOS_SLOT: names.slotName,
        KEEL_CHAOS_PUBLICATION: names.publicationName,
        KEEL_CHAOS_PREFIX: names.prefix,
        KEEL_CHAOS_BATCH: String(batchSize),
      };

      const deliveries = new Map<string, number>();
      let lastDelivery = Date.now();
      let consumer: QueueConsumer | undefined = broker.consumer(
        destination,
        async (message) => {
          const { key, n } = message.payload as { key: string; n: number };
          await db.transaction((tx) =>
            inboxOnce(tx, consumerName, message, (t) =>
              t.query('INSERT INTO effects (target, message_id, key, n) VALUES ($1, $2, $3, $4)', [
                target.kind,
                message.id,
                key,
                n,
              ]),
            ),
          );
          // Counted once handled: a handling that failed and was retried is no duplicate.
          deliveries.set(message.id, (deliveries.get(message.id) ?? 0) + 1);
          lastDelivery = Date.now();
        },
        { concurrency: 4 },
      );
      try {
        await consumer.start();

        // A backlog committed before any relay runs; the rest while the relays run and die.
        const written = new Writers(destination, names.prefix);
        const perWriter = total / writers;
        await written.write(perWriter / 2, 0);
        const runs: RelayChild[] = [];
        const killed: { published: number; effects: number }[] = [];
        let writing: Promise<void> | undefined;
        for (const batches of killAfter) {
          const doomed = runRelay(target.kind, env);
          runs.push(doomed);
          await doomed.seen('streaming');
          writing ??= written.write(perWriter / 2, 10);
          await doomed.seen('published', batches);
          doomed.proc.kill('SIGKILL');
          expect(await doomed.exit).toEqual({ code: null, signal: 'SIGKILL' });
          killed.push({ published: doomed.published(), effects: await effectCount(target.kind) });
        }
        await writing;
        expect(written.committed).toHaveLength(total);
        // Both kills were mid-stream: neither relay had published everything.
        for (const { published } of killed) expect(published).toBeLessThan(total);

        // The last relay runs until it has confirmed the WAL past the last write (so it published
        // all it was going to), and the consumer until it has been idle a while (so the duplicates
        // on their way have arrived too).
        const { rows: ends } = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
        const last = runRelay(target.kind, env);
        runs.push(last);
        await until(
          async () => {
            const { rows } = await db.query<{ done: boolean }>(
              'SELECT confirmed_flush_lsn >= $2::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $1',
              [names.slotName, ends[0]!.lsn],
            );
            return rows[0]?.done === true;
          },
          20_000,
          'the last relay confirmed the WAL past the last write',
        );
        await until(() => Date.now() - lastDelivery > 750, 20_000, 'the consumer idle');
        last.proc.kill('SIGTERM');
        await last.seen('stopped');
        expect(await last.exit).toEqual({ code: 0, signal: null });
        await consumer.stop({ drainMs: 2000 });
        consumer = undefined;
        if (target.left) expect(await target.left(broker, destination)).toBe(0);
        const trouble = runs
          .flatMap((run) => run.lines)
          .filter((line) => line.event === 'error' || line.event === 'parked');
        expect(trouble).toEqual([]);

        // Every committed message's effect exactly once, and nothing else.
        const { rows: counts } = await db.query<{ message_id: string; c: number }>(
          'SELECT message_id::text, count(*)::int AS c FROM effects WHERE target = $1 GROUP BY message_id',
          [target.kind],
        );
        const applied = new Set(counts.map((row) => row.message_id));
        const lost = written.committed.filter((id) => !applied.has(id));
        expect(
          lost,
          `${lost.length} committed messages never reached the consumer: ${lost.slice(0, 5).join(', ')}`,
        ).toEqual([]);
        expect(counts.filter((row) => row.c !== 1)).toEqual([]);
        expect(applied.size).toBe(total);
        const { rows: inboxRows } = await db.query<{ c: number }>(
          'SELECT count(*)::int AS c FROM keel_inbox WHERE consumer = $1',
          [consumerName],
        );
        expect(inboxRows[0]!.c).toBe(total);

        // Per key, the first deliveries (the effects, in the order they committed) follow commit
        // order: both brokers promise per-key order to one consumer (the PostgreSQL queue hands out
        // only the oldest message of a key; RabbitMQ per-key puts a key in one partition queue with
        // a single active consumer), and a relay after a kill publishes again from the slot's
        // confirmed position, so a duplicate only ever follows its first copy.
        const { rows: effects } = await db.query<{ key: string; n: number }>(
          'SELECT key, n FROM effects WHERE target = $1 ORDER BY at',
          [target.kind],
        );
        const byKey = new Map<string, number[]>();
        for (const { key, n } of effects) byKey.set(key, [...(byKey.get(key) ?? []), n]);
        expect(byKey.size).toBe(keysPerWriter * writers);
        for (const ns of byKey.values()) expect(ns).toEqual(ns.map((_, i) => i));

        const duplicated = [...deliveries.values()].filter((c) => c > 1).length;
        const extra = [...deliveries.values()].reduce((sum, c) => sum + c - 1, 0);
        console.log(
          `[wal-outbox-kill] ${target.name}: ${total} messages, ${duplicated} delivered more than once ` +
            `(${extra} extra deliveries); the killed relays had published ${killed.map((k) => k.published).join(' and ')} ` +
            `(effects applied by then: ${killed.map((k) => k.effects).join(' and ')}), the last one ${last.published()}; ` +
            `${Date.now() - started} ms`,
        );
        // Only committed messages were delivered, and only what a killed relay had published (or
        // was publishing: one batch) goes out again. The relay confirms at most every 50 ms while
        // batches follow each other, so a kill repeats up to ~50 ms of publishing, and a message
        // goes out at most once per relay.
        expect(deliveries.size).toBe(total);
        const killedPublished = killed.reduce((sum, k) => sum + k.published, 0);
        expect(extra).toBeLessThanOrEqual(killedPublished + killAfter.length * batchSize);
        expect(Math.max(...deliveries.values())).toBeLessThanOrEqual(killAfter.length + 1);
      } finally {
        await consumer?.stop({ drainMs: 500 });
        await cleanUp();
        await dropWalOutboxSlot(db, names);
      }
    }, 50_000);
  },
);

async function effectCount(kind: string): Promise<number> {
  const { rows } = await db.query<{ c: number }>(
    'SELECT count(DISTINCT message_id)::int AS c FROM effects WHERE target = $1',
    [kind],
  );
  return rows[0]!.c;
}
