// Order by logical time, never by wall clock. Three services whose clocks disagree, as real ones
// do, pass an order along through a broker: sorted by `occurredAt` (wall time) the payment comes
// before the order it pays for; sorted by the hybrid logical clock stamp every envelope carries,
// causes come before effects. Then two replicas of a cart written at once: a vector clock says the
// writes are concurrent (a conflict to merge, not a winner to pick), and a clock set minutes ahead
// is refused by the drift guard instead of dragging everyone's time with it.
//
//   npx tsx examples/10-logical-time/main.ts
//
// In memory (keel's memory broker): nothing to start. The test beside this file runs it on a
// manual clock and checks the output.
import { pathToFileURL } from 'node:url';
import { isKeelError } from 'keel/errors';
import { MemoryBroker, createEnvelope, type Envelope } from 'keel/messaging';
import { HybridLogicalClock, VectorClock, compareHlc, parseHlc } from 'keel/ordering';
import { systemClock, type Clock } from 'keel/time';

export interface ExampleOptions {
  clock?: Clock;
  log?: (line: string) => void;
  /** Lets the consumers run until `done` is true; a test moves its manual clock here. */
  settle?: (done: () => boolean) => Promise<void>;
}

/** A node's own reading of time: the shared clock, off by `offsetMs`. */
function skewed(clock: Clock, offsetMs: number): Clock {
  return {
    now: () => clock.now() + offsetMs,
    setTimeout: (fn, ms) => clock.setTimeout(fn, ms),
    clearTimeout: (handle) => clock.clearTimeout(handle),
  };
}

export async function runExample(options: ExampleOptions = {}): Promise<void> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? console.log;
  const settle =
    options.settle ??
    (async (done: () => boolean) => {
      while (!done()) await new Promise((resolve) => setTimeout(resolve, 5));
    });

  // 1. orders runs 1.5 s fast, payments is right, shipping 0.8 s slow.
  const node = (name: string, offsetMs: number) => {
    const own = skewed(clock, offsetMs);
    return { name, clock: own, hlc: new HybridLogicalClock({ node: name, clock: own }) };
  };
  const orders = node('orders', 1500);
  const payments = node('payments', 0);
  const shipping = node('shipping', -800);
  const broker = new MemoryBroker({ clock });
  const audit: Envelope[] = [];
  const send = async (from: typeof orders, destination: string, type: string, orderId: string) => {
    const envelope = createEnvelope({ type, payload: { orderId }, key: orderId }, from.clock, from.hlc);
    audit.push(envelope);
    await broker.publish(destination, [envelope]);
  };
  // Each consumer merges what it receives into its service's clock (the receive event), so what the
  // service stamps next is ordered after it.
  const consumers = [
    broker.consumer('payments', (m) => send(payments, 'shipping', 'payment.captured.v1', m.key!), {
      clock,
      hlc: payments.hlc,
    }),
    broker.consumer('shipping', (m) => send(shipping, 'done', 'shipment.sent.v1', m.key!), {
      clock,
      hlc: shipping.hlc,
    }),
  ];
  for (const consumer of consumers) await consumer.start();
  await send(orders, 'payments', 'order.placed.v1', 'o-1');
  await settle(() => audit.length === 3);
  for (const consumer of consumers) await consumer.stop();

  const types = (list: Envelope[]): string => list.map((e) => e.type.replace(/\.v1$/, '')).join(' → ');
  const byWallClock = [...audit].sort((a, b) => a.occurredAt.localeCompare(b.occurredAt));
  const byHlc = [...audit].sort((a, b) => compareHlc(parseHlc(a.hlc!), parseHlc(b.hlc!)));
  log(`by occurredAt: ${types(byWallClock)}`);
  log(`by hlc:        ${types(byHlc)}`);
  const [placed, captured] = byHlc;
  const skew = Date.parse(placed!.occurredAt) - Date.parse(captured!.occurredAt);
  log(`payments stamped its capture after the order although its clock read ${skew} ms earlier`);

  // 2. Two replicas of a cart, each written without having seen the other's write.
  let replicaA = { items: ['mug'], clock: VectorClock.empty.increment('a') };
  const replicaB = { items: ['book'], clock: VectorClock.empty.increment('b') };
  log(
    `cart replicas a ${JSON.stringify(replicaA.clock)} and b ${JSON.stringify(replicaB.clock)}: ${replicaA.clock.compare(replicaB.clock)}`,
  );
  // A conflict: keep both writes (here the union of the items) rather than the later-looking one.
  replicaA = {
    items: [...new Set([...replicaA.items, ...replicaB.items])].sort(),
    clock: replicaA.clock.merge(replicaB.clock).increment('a'),
  };
  log(
    `a merges b's write: ${replicaA.items.join(', ')} at ${JSON.stringify(replicaA.clock)}, ${replicaA.clock.compare(replicaB.clock)} b's`,
  );

  // 3. A node whose clock is five minutes fast: its stamp is refused, and payments' clock keeps its time.
  const fast = node('fast-node', 5 * 60_000);
  const before = payments.hlc.now();
  try {
    payments.hlc.receive(fast.hlc.now());
    log('a stamp five minutes ahead was taken: every clock it reaches runs five minutes fast from now on');
  } catch (error) {
    if (!isKeelError(error, 'KEEL_CLOCK_DRIFT')) throw error;
    const moved = payments.hlc.now().physical - before.physical;
    log(
      `a stamp five minutes ahead is refused (${error.code}); payments' clock ${moved < 1000 ? 'kept its time' : `moved ${moved} ms`}`,
    );
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runExample();
}
