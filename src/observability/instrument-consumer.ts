import type { Counter, Meter } from '@opentelemetry/api';
import type { QueueConsumer } from '../messaging/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { messagingAttributes as m, metricNames } from './names.ts';

/**
 * Counts what a consumer does with messages, from its events: `keel.consumer.handled`,
 * `keel.consumer.retried` and `keel.consumer.dead_lettered`, by destination. Handler duration
 * is measured by the interceptor (`tracedHandler(handler, { meter })`), around the handler
 * itself. Dispose the handle to detach; what was counted until then is recorded.
 *
 * Counts are added to the counters once per turn of the event loop, not once per message: a
 * counter's `add` works out its attributes' identity on every call (about half a µs), which is a
 * large share of what the consumer itself spends on a message.
 */
export function instrumentConsumer(
  consumer: QueueConsumer,
  meter: Meter,
  destination: string,
): Disposable & ListenerHandle {
  const attributes = { [m.destinationName]: destination };
  const tallies = [
    tally(
      meter.createCounter(metricNames.consumerHandled, {
        description: 'Messages whose handler resolved (acked next)',
      }),
    ),
    tally(
      meter.createCounter(metricNames.consumerRetried, {
        description: 'Deliveries that failed and were scheduled again',
      }),
    ),
    tally(
      meter.createCounter(metricNames.consumerDeadLettered, {
        description: 'Messages given up on: moved to the dead-letter destination',
      }),
    ),
  ] as const;
  const [handled, retried, deadLettered] = tallies;
  let scheduled = false;
  const record = (): void => {
    scheduled = false;
    for (const t of tallies) {
      if (t.count === 0) continue;
      t.counter.add(t.count, attributes);
      t.count = 0;
    }
  };
  const count = (t: Tally): void => {
    t.count++;
    if (scheduled) return;
    scheduled = true;
    setImmediate(record);
  };
  const handles = [
    consumer.events.on('handled', () => count(handled)),
    consumer.events.on('retried', () => count(retried)),
    consumer.events.on('dead-lettered', () => count(deadLettered)),
  ];
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
    record();
  };
  return { dispose, [Symbol.dispose]: dispose };
}

interface Tally {
  readonly counter: Counter;
  /** Counted since the counter was last added to. */
  count: number;
}

function tally(counter: Counter): Tally {
  return { counter, count: 0 };
}
