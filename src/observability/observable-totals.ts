import type { Meter, ObservableResult } from '@opentelemetry/api';

/** Running totals of one series (one attribute value), one number per counter. */
export type Totals<K extends string> = Record<K, number>;

export interface ObservableTotals<K extends string> {
  /** The totals of one attribute value (a destination, a slot), created at zero on first use. */
  of(value: string): Totals<K>;
}

const byMeter = new WeakMap<Meter, Map<string, ObservableTotals<string>>>();

/**
 * Observable counters over plain running totals, by one attribute: what is counted costs one
 * integer increment, and a collection reads the totals. A synchronous counter's `add` works out
 * its attributes' identity on every call (about half a µs, a large share of what a consumer spends
 * on a message), and batching adds per turn of the event loop left a scrape that ran within the
 * same turn without them.
 *
 * One set of counters per meter and set of names, each with one callback reporting every series:
 * two callbacks observing the same attributes would each be taken as the cumulative value, and the
 * counter would jump between them. So everything instrumented on one meter with the same counters
 * and attribute value shares its totals.
 */
export function observableTotals<K extends string>(
  meter: Meter,
  attribute: string,
  counters: Record<K, { name: string; description: string }>,
): ObservableTotals<K> {
  const keys = Object.keys(counters) as K[];
  const id = `${attribute}:${keys.map((k) => counters[k].name).join(',')}`;
  let known = byMeter.get(meter);
  if (known === undefined) {
    known = new Map();
    byMeter.set(meter, known);
  }
  const existing = known.get(id);
  if (existing !== undefined) return existing;
  const series = new Map<string, Totals<K>>();
  for (const key of keys) {
    const { name, description } = counters[key];
    meter.createObservableCounter(name, { description }).addCallback((result: ObservableResult) => {
      for (const [value, totals] of series) {
        // A counter nothing has happened to yet stays out of the collection, as an unused one would.
        if (totals[key] > 0) result.observe(totals[key], { [attribute]: value });
      }
    });
  }
  const created: ObservableTotals<K> = {
    of(value) {
      let totals = series.get(value);
      if (totals === undefined) {
        totals = Object.fromEntries(keys.map((k) => [k, 0])) as Totals<K>;
        series.set(value, totals);
      }
      return totals;
    },
  };
  known.set(id, created);
  return created;
}
