import type { Meter, ObservableCounter, ObservableResult } from '@opentelemetry/api';
import type { QueueConsumer } from '../messaging/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { messagingAttributes as m, metricNames } from './names.ts';

/**
 * Counts what a consumer does with messages, from its events: `keel.consumer.handled`,
 * `keel.consumer.retried` and `keel.consumer.dead_lettered`, by destination. Handler duration
 * is measured by the interceptor (`tracedHandler(handler, { meter })`), around the handler
 * itself. Dispose the handle to detach; what was counted until then stays in the totals.
 *
 * A message costs one integer increment: the counters are observable, and a collection reads
 * the running totals. A synchronous counter's `add` works out its attributes' identity on every
 * call (about half a µs, a large share of what the consumer itself spends on a message), and
 * batching the adds per turn of the event loop left a scrape that ran within the same turn
 * without them. Consumers of one destination instrumented on one meter share its totals.
 */
export function instrumentConsumer(
  consumer: QueueConsumer,
  meter: Meter,
  destination: string,
): Disposable & ListenerHandle {
  const totals = consumerTotals(meter).of(destination);
  const handles = [
    consumer.events.on('handled', () => totals.handled++),
    consumer.events.on('retried', () => totals.retried++),
    consumer.events.on('dead-lettered', () => totals.deadLettered++),
  ];
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
  };
  return { dispose, [Symbol.dispose]: dispose };
}

interface Totals {
  handled: number;
  retried: number;
  deadLettered: number;
}

interface MeterTotals {
  of(destination: string): Totals;
}

/**
 * One set of observable counters per meter, and one callback reporting every destination's
 * totals: two callbacks observing the same attributes would each be taken as the cumulative
 * value, and the counter would jump between them.
 */
const totalsByMeter = new WeakMap<Meter, MeterTotals>();

function consumerTotals(meter: Meter): MeterTotals {
  const known = totalsByMeter.get(meter);
  if (known !== undefined) return known;
  const byDestination = new Map<string, Totals>();
  const counter = (name: string, description: string): ObservableCounter =>
    meter.createObservableCounter(name, { description });
  const handled = counter(metricNames.consumerHandled, 'Messages whose handler resolved (acked next)');
  const retried = counter(metricNames.consumerRetried, 'Deliveries that failed and were scheduled again');
  const deadLettered = counter(
    metricNames.consumerDeadLettered,
    'Messages given up on: moved to the dead-letter destination',
  );
  const report =
    (pick: (totals: Totals) => number) =>
    (result: ObservableResult): void => {
      for (const [destination, totals] of byDestination) {
        const value = pick(totals);
        // A counter nothing has happened to yet stays out of the scrape, as an unused one would.
        if (value > 0) result.observe(value, { [m.destinationName]: destination });
      }
    };
  handled.addCallback(report((t) => t.handled));
  retried.addCallback(report((t) => t.retried));
  deadLettered.addCallback(report((t) => t.deadLettered));
  const created: MeterTotals = {
    of(destination) {
      let totals = byDestination.get(destination);
      if (totals === undefined) {
        totals = { handled: 0, retried: 0, deadLettered: 0 };
        byDestination.set(destination, totals);
      }
      return totals;
    },
  };
  totalsByMeter.set(meter, created);
  return created;
}
