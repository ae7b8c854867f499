// Idempotency-Key on a fastify route of your own, instead of a hand-rolled keys table: the key is
// claimed and its response stored in the handler's own transaction, beside the payment and its
// outbox event. A client's retry gets the first answer and no second payment; the same key with
// another body is refused; a request that failed with a 5xx lets its key go, so its retry runs;
// past its TTL a key runs again. After the commit, the consumer that charges the card wraps the
// call in idempotent(key, fn) and hands the key on, so the processor charges each payment once.
//
//   npx tsx examples/09-idempotency-keys/main.ts                      # embedded PGlite, in memory (waits 1 s)
//   DATABASE_URL=postgres://… npx tsx examples/09-idempotency-keys/main.ts   # a server (schema keel_example_09)
import Fastify, { type LightMyRequestResponse } from 'fastify';
import { migrate, openPgDb, openPgliteDb, type Db } from 'keel/db';
import { KeelError } from 'keel/errors';
import {
  PostgresIdempotencyStore,
  claimIdempotentRequest,
  completeIdempotentRequest,
  createIdempotent,
  deriveIdempotencyKey,
  idempotencyMigrations,
  installIdempotency,
  sendStoredResponse,
} from 'keel/idempotency';
import { createEnvelope, type Envelope } from 'keel/messaging';
import { OutboxRelay, addToOutbox, outboxMigrations, outboxStatus } from 'keel/outbox';
import { sleep, systemClock, type Clock } from 'keel/time';

export interface ExampleOptions {
  log: (line: string) => void;
  db?: Db;
  /** Default the system clock; a test passes a manual one, and `wait` to move it. */
  clock?: Clock;
  /** How the example lets time pass. Default a real sleep. */
  wait?: (ms: number) => Promise<void>;
}

interface Payment {
  payer: string;
  cents: number;
}

/** How long a key's response is replayed: 1 s, so the example outlives it. The default is 24 h. */
const ttlMs = 1000;

/** Your app. `outage.next` fails the next payment inside its transaction, as a failover would. */
function paymentsApp(db: Db, store: PostgresIdempotencyStore, outage: { next: boolean }) {
  const app = Fastify();
  installIdempotency(app, { store, ttlMs, methods: ['POST'], claim: 'in-transaction' });
  app.post('/payments', async (request, reply) => {
    const { payer, cents } = request.body as Payment;
    const response = await db.transaction(async (tx) => {
      // First: a key that is taken fails this transaction, and the plugin answers for the handler.
      await claimIdempotentRequest(request, tx);
      const { rows } = await tx.query<{ id: number }>(
        'INSERT INTO payments (payer, cents) VALUES ($1, $2) RETURNING id',
        [payer, cents],
      );
      const id = rows[0]!.id;
      const event = createEnvelope({ type: 'payment.accepted.v1', payload: { id, cents }, key: String(id) });
      await addToOutbox(tx, 'payments', event);
      if (outage.next) {
        outage.next = false;
        throw new KeelError('KEEL_DB_UNAVAILABLE', 'the database failed over before the commit');
      }
      // Last: the response commits with the payment and its event, so a crash after the commit
      // still replays it; a rollback takes the claim with it, so the key is free again.
      return completeIdempotentRequest(request, tx, {
        status: 201,
        headers: { 'content-type': 'application/json; charset=utf-8', location: `/payments/${id}` },
        body: JSON.stringify({ id, cents }),
      });
    });
    // Exactly what was stored: a replay then answers as this first request did.
    return sendStoredResponse(reply, response);
  });
  return app;
}

/** A card processor's API, as Stripe's: a repeated Idempotency-Key gets the first charge back. */
class CardProcessor {
  readonly charges = new Map<string, string>();
  calls = 0;
  /** Drops the next answer on its way back, as a timeout does: the charge is made all the same. */
  loseNextAnswer = false;

  async charge(idempotencyKey: string, cents: number): Promise<{ chargeId: string }> {
    this.calls++;
    const chargeId = this.charges.get(idempotencyKey) ?? `ch_${this.charges.size + 1}_${cents}`;
    this.charges.set(idempotencyKey, chargeId);
    if (this.loseNextAnswer) {
      this.loseNextAnswer = false;
      throw new Error('no answer from the processor within 10 s');
    }
    return { chargeId };
  }
}

export async function runExample(options: ExampleOptions): Promise<void> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const wait = options.wait ?? ((ms: number) => sleep(ms, { clock }));
  const db = options.db ?? (await openDefault());
  // The store judges expiry on its clock; the plugin's `clock` option only paces waits for a key in flight.
  const store = new PostgresIdempotencyStore(db, { clock });
  const outage = { next: false };
  const app = paymentsApp(db, store, outage);
  try {
    await migrate(db, [
      ...outboxMigrations,
      ...idempotencyMigrations,
      {
        id: '0001_payments',
        sql: 'CREATE TABLE payments (id serial PRIMARY KEY, payer text NOT NULL, cents int NOT NULL)',
      },
    ]);
    const pay = async (key: string, payload: Payment) =>
      answer(
        await app.inject({ method: 'POST', url: '/payments', headers: { 'idempotency-key': key }, payload }),
      );
    const ada = { payer: 'ada', cents: 1200 };
    const bob = { payer: 'bob', cents: 500 };

    // 1. The first request runs. Its client timed out and retries: the stored response answers.
    log(`k-1: ${await pay('k-1', ada)}`);
    log(`k-1 again, same body: ${await pay('k-1', ada)}`);
    // 2. The same key for another payment is the client's bug: refused, nothing runs.
    log(`k-1, another body: ${await pay('k-1', { payer: 'ada', cents: 9900 })}`);
    log(await effects(db));

    // 3. A 5xx: the transaction rolled back, claim and all, so the retry runs.
    outage.next = true;
    const failed = await pay('k-2', bob);
    log(`k-2 during a failover: ${failed}; retried: ${await pay('k-2', bob)}`);

    // 4. Past its TTL the key is forgotten: the same request is a new payment.
    await wait(ttlMs);
    log(`k-1 after its ${ttlMs / 1000} s TTL: ${await pay('k-1', ada)}`);
    log(await effects(db));

    // 5. After the commit: a consumer charges the card for each event. Delivery is at-least-once,
    //    so each event comes twice; idempotent() runs the charge once per event, and hands its key
    //    to the processor, which deduplicates a charge retried after its answer was lost.
    const events: Envelope[] = [];
    const relay = new OutboxRelay(db, { publish: async (_to, messages) => void events.push(...messages) });
    await relay.relayOnce();
    const processor = new CardProcessor();
    const idempotent = createIdempotent({ store, scope: 'card-charges', clock });
    const chargeCard = (event: Envelope) =>
      idempotent(deriveIdempotencyKey('card-charger', event.id), ({ key }) =>
        processor.charge(key, (event.payload as { cents: number }).cents),
      );
    processor.loseNextAnswer = true;
    for (const event of [...events, ...events]) {
      await chargeCard(event).catch((error: unknown) => {
        log(`a charge failed (${(error as Error).message}); its retry sends the same key`);
        return chargeCard(event);
      });
    }
    log(
      `${events.length} events, each delivered twice: ${processor.charges.size} charges in ${processor.calls} calls to the processor`,
    );
  } finally {
    await app.close();
    if (options.db === undefined) await db.close();
  }
}

/** What the client saw: status and body, marked when it was a replay; an error's code. */
function answer(response: LightMyRequestResponse): string {
  if (response.statusCode >= 400) return `${response.statusCode} ${response.json<{ code: string }>().code}`;
  const replayed = response.headers['idempotent-replayed'] === 'true' ? ', Idempotent-Replayed: true' : '';
  return `${response.statusCode} ${response.body}${replayed}`;
}

/** The effects that count: payments written, and events waiting in the outbox. */
async function effects(db: Db): Promise<string> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM payments');
  return `payments in the table: ${rows[0]!.n}, events in the outbox: ${(await outboxStatus(db)).backlog}`;
}

/** Embedded by default; on a server, a schema of the example's own, emptied first so each run starts afresh. */
async function openDefault(): Promise<Db> {
  const url = process.env.DATABASE_URL;
  if (url === undefined) return openPgliteDb({});
  const schema = 'keel_example_09';
  const server = await openPgDb({ url });
  await server.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await server.close();
  return openPgDb({ url, schema });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample({ log: (line) => console.log(line) });
}
