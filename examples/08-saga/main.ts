// A saga on PostgreSQL alone: an order's three steps (reserve stock → charge payment → ship), each
// one's outcome committed before the next one starts. One order completes; one whose shipping is
// refused for good is undone in reverse (the charge, then the reservation); and one outlives its
// runner: process A dies in the last step, after the carrier took the parcel and before the outcome
// was recorded. Once A's lease expires, process B takes the instance over from the stored state and
// runs that one step again — with the same idempotency key, so the carrier ships once — and nothing
// before it.
//
//   npx tsx examples/08-saga/main.ts                      # embedded PGlite, in memory (waits 3 s)
//   DATABASE_URL=postgres://… npx tsx examples/08-saga/main.ts   # a server (schema keel_example_08)
import { migrate, openPgDb, openPgliteDb, type Db, type TransactionOptions, type Tx } from 'keel/db';
import {
  defineSaga,
  getSaga,
  PermanentError,
  SagaRunner,
  sagaMigrations,
  startSaga,
  waitForSaga,
  type SagaDefinition,
  type SagaHistoryEntry,
} from 'keel/saga';
import { sleep, systemClock, type Clock } from 'keel/time';

interface Order {
  orderId: string;
  cents: number;
  country: string;
}

export interface ExampleOptions {
  log: (line: string) => void;
  db?: Db;
  /** Default the system clock; a test passes a manual one, and `wait` to move it. */
  clock?: Clock;
  /** How the example lets time pass. Default a real sleep. */
  wait?: (ms: number) => Promise<void>;
}

/**
 * A remote API (stock, payments, a carrier), simulated in-process. Like a payment provider's, it
 * applies each idempotency key once and answers a repeat with the first answer: that, and not the
 * runner, is what makes a step run again after a crash take effect once.
 */
class RemoteApi {
  readonly calls = new Map<string, number>(); // by idempotency key
  readonly effects = new Map<string, string>(); // the one answer per idempotency key
  /** Runs once, right after the next effect: where the example makes process A die. */
  afterNextEffect: (() => void) | undefined;

  async call(operation: string, idempotencyKey: string): Promise<string> {
    this.calls.set(idempotencyKey, (this.calls.get(idempotencyKey) ?? 0) + 1);
    if (!this.effects.has(idempotencyKey)) {
      this.effects.set(idempotencyKey, `${operation}-${this.effects.size + 1}`);
      const die = this.afterNextEffect;
      this.afterNextEffect = undefined;
      die?.();
    }
    return this.effects.get(idempotencyKey)!;
  }
}

function placeOrderSaga(stock: RemoteApi, payments: RemoteApi, carrier: RemoteApi): SagaDefinition<Order> {
  return defineSaga<Order>({
    // Runners claim instances by name@version in the whole schema: a name no other saga there has.
    name: 'example.place-order',
    version: 1,
    steps: [
      {
        name: 'reserve',
        action: (ctx) => stock.call('reserve', ctx.idempotencyKey),
        compensation: (ctx) => stock.call('release', ctx.idempotencyKey),
      },
      {
        name: 'charge',
        action: (ctx) => payments.call('charge', ctx.idempotencyKey),
        compensation: (ctx) => payments.call('refund', ctx.idempotencyKey),
      },
      {
        name: 'ship',
        action: async (ctx) => {
          // No retry can change this answer: the step fails for good at once.
          if (ctx.input.country === 'AQ') throw new PermanentError('carrier: no delivery to AQ');
          return carrier.call('ship', ctx.idempotencyKey);
        },
        // No compensation: only completed steps are undone, and no step follows this one.
      },
    ],
  });
}

export async function runExample(options: ExampleOptions): Promise<void> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const wait = options.wait ?? ((ms: number) => sleep(ms, { clock }));
  const db = options.db ?? (await openDefault());
  const stock = new RemoteApi();
  const payments = new RemoteApi();
  const carrier = new RemoteApi();
  const saga = placeOrderSaga(stock, payments, carrier);
  const processA = severable(db);
  // Short leases so a dead runner's instances move within seconds (the default is 30 s).
  const runner = (owner: string, on: Db): SagaRunner =>
    new SagaRunner({ db: on, sagas: [saga], clock, owner, leaseMs: 2000 });
  const a = runner('process-a', processA.db);
  const b = runner('process-b', db);
  try {
    await migrate(db, [
      ...sagaMigrations,
      {
        id: 'example_08_orders',
        sql: 'CREATE TABLE example_08_orders (id text PRIMARY KEY, cents int NOT NULL)',
      },
    ]);
    await a.start();

    // 1. Two orders: one completes, one is refused by the carrier and undone in reverse. The wait
    //    reads the instances in the database, woken by the NOTIFY of the write that ends each one:
    //    it needs no runner, so any process could wait for them.
    await placeOrder(db, saga, { orderId: 'o-1', cents: 1200, country: 'FR' }, clock);
    await placeOrder(db, saga, { orderId: 'o-2', cents: 350, country: 'AQ' }, clock);
    await Promise.all(['o-1', 'o-2'].map((id) => waitForSaga(db, id, { clock })));
    log(await story(db, 'o-1'));
    log(await story(db, 'o-2'));

    // 2. Process A dies as the carrier ships o-3: the effect happened, its record never will.
    //    To the database that is what a crash looks like: no more progress writes, no heartbeats.
    const died = new Promise<void>((resolve) => {
      carrier.afterNextEffect = () => {
        processA.sever();
        resolve();
      };
    });
    await placeOrder(db, saga, { orderId: 'o-3', cents: 990, country: 'DE' }, clock);
    await died;
    const { instance } = await getSaga(db, 'o-3');
    // `results` lists the completed steps in the order they ran.
    const recorded = Object.keys(instance.results);
    log(
      `o-3 as stored when process-a died: ${instance.state} at ${saga.steps[instance.step]!.name}; ` +
        `recorded ${recorded.join(', ')}; leased to ${instance.leaseOwner}`,
    );

    // 3. Process B (a replica, or A restarted) takes o-3 over once A's 2 s lease has run out.
    await b.start();
    await wait(3000);
    await waitForSaga(db, 'o-3', { clock });
    log(await story(db, 'o-3'));
    log(tally('o-3', [stock, payments, carrier]));
  } finally {
    await b.stop();
    await a.stop();
    if (options.db === undefined) await db.close();
  }
}

/** The order row and its saga in one transaction: the saga starts if, and only if, the order commits. */
async function placeOrder(db: Db, saga: SagaDefinition<Order>, order: Order, clock: Clock): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('INSERT INTO example_08_orders (id, cents) VALUES ($1, $2)', [order.orderId, order.cents]);
    await startSaga(tx, saga, order, { id: order.orderId, clock });
  });
}

/** An instance's history as recorded: what each runner did, in order. */
async function story(db: Db, id: string): Promise<string> {
  const { instance, history } = await getSaga(db, id);
  const runs: { owner: string; did: string[] }[] = [];
  for (const entry of history) {
    const did = done(entry);
    if (did === undefined || entry.owner === null) continue;
    if (runs.at(-1)?.owner !== entry.owner) runs.push({ owner: entry.owner, did: [] });
    runs.at(-1)!.did.push(did);
  }
  return `${id} ${instance.state} — ${runs.map((run) => `${run.owner}: ${run.did.join(', ')}`).join('; ')}`;
}

function done(entry: SagaHistoryEntry): string | undefined {
  // Each kind of entry has its own type: a failure's `detail` is the stored error.
  switch (entry.event) {
    case 'step-completed':
      return entry.step;
    case 'step-failed':
      return `${entry.step} failed (${entry.detail.message})`;
    case 'compensation-completed':
      return `undo ${entry.step}`;
    default:
      return undefined;
  }
}

/** What the remote APIs saw of one instance: calls per idempotency key, and effects applied. */
function tally(id: string, apis: RemoteApi[]): string {
  const keys = apis.flatMap((api) => [...api.calls].filter(([key]) => key.startsWith(`${id}:`)));
  const effects = apis.flatMap((api) => [...api.effects.keys()].filter((key) => key.startsWith(`${id}:`)));
  const calls = keys.map(([key, n]) => `${key.split(':')[1]} ${n}`).join(', ');
  return `${id} calls per idempotency key: ${calls}; effects applied: ${effects.length}`;
}

/**
 * Process A's connection. After `sever()` every statement it begins fails, as after a crash or a
 * partition: the runner can neither record progress nor extend its lease.
 */
function severable(db: Db): { db: Db; sever: () => void } {
  let severed = false;
  const lost = (): Promise<never> => Promise.reject(new Error('connection to the database lost'));
  const view: Db = {
    dialect: db.dialect,
    schema: db.schema,
    query: <R>(sql: string, params?: readonly unknown[]) => (severed ? lost() : db.query<R>(sql, params)),
    transaction: <T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions) =>
      severed ? lost() : db.transaction(fn, options),
    listen: (channel, onNotify) => db.listen(channel, onNotify),
    close: async () => undefined,
  };
  return { db: view, sever: () => void (severed = true) };
}

/** Embedded by default; on a server, a schema of the example's own, emptied first so each run starts afresh. */
async function openDefault(): Promise<Db> {
  const url = process.env.DATABASE_URL;
  if (url === undefined) return openPgliteDb({});
  const schema = 'keel_example_08';
  const server = await openPgDb({ url });
  await server.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await server.close();
  return openPgDb({ url, schema });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample({ log: (line) => console.log(line) });
}
