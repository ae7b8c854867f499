import type { Meter, ObservableResult } from '@opentelemetry/api';
import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { outboxBacklog, walOutboxStatus, type WalOutboxRelay } from '../outbox/index.ts';
import { walOutboxSlotNames } from '../outbox/wal-outbox-slot.ts';
import type { ListenerHandle } from '../service/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { keelAttributes, messagingAttributes as m, metricNames } from './names.ts';
import { observableTotals, type Totals } from './observable-totals.ts';

/**
 * Observable gauges read at each collection (each `/metrics` scrape), one query each time:
 * `keel.outbox.backlog` (rows committed, not yet published), `keel.outbox.parked`, and
 * `keel.outbox.oldest_unpublished_age` (s): the number to alert on when a relay is down.
 * The query (`outboxBacklog`) reads `keel_outbox` alone: the archive of published rows, millions
 * on a busy outbox, is never scanned by a scrape. A failing query reports nothing for that scrape rather than failing the scrape.
 */
export function instrumentOutbox(
  db: Queryable,
  meter: Meter,
  options: { clock?: Clock } = {},
): ListenerHandle {
  const clock = options.clock ?? systemClock;
  const backlog = meter.createObservableGauge(metricNames.outboxBacklog, {
    description: 'Outbox rows committed and not yet published',
  });
  const parked = meter.createObservableGauge(metricNames.outboxParked, {
    description: 'Outbox rows parked after too many failed publishes',
  });
  const oldest = meter.createObservableGauge(metricNames.outboxOldestAge, {
    description: 'Age of the oldest unpublished outbox row',
    unit: 's',
  });
  const callback = async (result: {
    observe: (gauge: typeof backlog, value: number) => void;
  }): Promise<void> => {
    const status = await outboxBacklog(db, clock).catch(() => undefined);
    if (status === undefined) return;
    result.observe(backlog, status.backlog);
    result.observe(parked, status.parked);
    result.observe(oldest, status.oldestUnpublishedAgeMs / 1000);
  };
  meter.addBatchObservableCallback(callback, [backlog, parked, oldest]);
  const dispose = (): void => meter.removeBatchObservableCallback(callback, [backlog, parked, oldest]);
  return { dispose, [Symbol.dispose]: dispose };
}

/** Anything that can count the messages waiting in a destination (`PgQueue.depth`). */
export interface DepthSource {
  depth(destination: string): Promise<number>;
  /** Seconds consumers are behind: the age of the oldest due message. Optional. */
  lag?(destination: string): Promise<number>;
}

/** `keel.queue.depth` and, where the source tells it, `keel.queue.lag` per destination, read at each collection. */
export function instrumentQueueDepth(
  queue: DepthSource,
  destinations: readonly string[],
  meter: Meter,
): ListenerHandle {
  const gauge = meter.createObservableGauge(metricNames.queueDepth, {
    description: 'Messages waiting in a destination (ready, delayed and leased)',
  });
  const callback = async (result: ObservableResult): Promise<void> => {
    await Promise.all(
      destinations.map(async (destination) => {
        const depth = await queue.depth(destination).catch(() => undefined);
        if (depth !== undefined) result.observe(depth, { [m.destinationName]: destination });
      }),
    );
  };
  gauge.addCallback(callback);
  // Consumer lag, where the source can tell it.
  const lagOf = queue.lag?.bind(queue);
  const lagGauge = meter.createObservableGauge(metricNames.queueLag, {
    description: 'Age of the oldest message due in a destination: how far its consumers are behind',
    unit: 's',
  });
  const lagCallback = async (result: ObservableResult): Promise<void> => {
    if (lagOf === undefined) return;
    await Promise.all(
      destinations.map(async (destination) => {
        const lag = await lagOf(destination).catch(() => undefined);
        if (lag !== undefined) result.observe(lag, { [m.destinationName]: destination });
      }),
    );
  };
  lagGauge.addCallback(lagCallback);
  const dispose = (): void => {
    gauge.removeCallback(callback);
    lagGauge.removeCallback(lagCallback);
  };
  return { dispose, [Symbol.dispose]: dispose };
}

export interface InstrumentWalOutboxRelayOptions {
  /** Where the slot's lag is read: the database the relay was given. */
  db: Queryable;
  /** The slot the relay streams from, as it was given. Default `keel_outbox`. */
  slotName?: string;
}

/**
 * The WAL outbox relay in numbers, each with `keel.wal_outbox.slot`. Gauges read at each
 * collection: `keel.wal_outbox.lag` (By), the WAL between what was confirmed published and the
 * server's position (one `walOutboxStatus` query; nothing while the slot does not exist or the
 * query fails), and `keel.wal_outbox.buffered`, messages received and not yet published.
 * Observable counters over the relay's events, as `instrumentConsumer`'s:
 * `keel.wal_outbox.published`, `keel.wal_outbox.publish_failed` (messages in a failed publish,
 * every try) and `keel.wal_outbox.parked`. Parked messages are table outbox rows from then on,
 * so `instrumentOutbox`'s `keel.outbox.parked` counts them too until they are retried.
 *
 * Relays of one slot instrumented on one meter — the streaming one and those standing by —
 * report one series: their buffered messages and their totals add up. Dispose the handle to
 * detach; what was counted until then stays in the totals, and the gauges are no longer read once
 * the slot's last relay is detached.
 */
export function instrumentWalOutboxRelay(
  relay: Pick<WalOutboxRelay, 'buffered' | 'events'>,
  meter: Meter,
  options: InstrumentWalOutboxRelayOptions,
): ListenerHandle {
  if (typeof options?.db?.query !== 'function') {
    throw new InvalidArgumentError('db', 'the Db the relay was given', options?.db);
  }
  const { slotName } = walOutboxSlotNames({ slotName: options.slotName });
  const slot = walOutboxSeries(meter).of(slotName);
  const { totals } = slot;
  slot.relays.set(relay, options.db);
  // `published` lists only what the broker accepted: parked messages come as `parked` alone.
  const handles = [
    relay.events.on('published', ({ messages }) => (totals.published += messages.length)),
    relay.events.on('publish-failed', ({ messages }) => (totals.publishFailed += messages.length)),
    relay.events.on('parked', () => totals.parked++),
  ];
  const dispose = (): void => {
    for (const handle of handles) handle.dispose();
    slot.relays.delete(relay);
  };
  return { dispose, [Symbol.dispose]: dispose };
}

interface WalOutboxSlotSeries {
  totals: Totals<'published' | 'publishFailed' | 'parked'>;
  /** The relays instrumented and not disposed, each with the database its lag is read from. */
  relays: Map<Pick<WalOutboxRelay, 'buffered'>, Queryable>;
}

/**
 * One set of instruments per meter and one callback each, reporting every slot: two callbacks
 * observing the same attributes would each be taken as the whole value (see `observableTotals`).
 */
const walOutboxSeriesByMeter = new WeakMap<Meter, { of(slotName: string): WalOutboxSlotSeries }>();

function walOutboxSeries(meter: Meter): { of(slotName: string): WalOutboxSlotSeries } {
  const known = walOutboxSeriesByMeter.get(meter);
  if (known !== undefined) return known;
  const bySlot = new Map<string, WalOutboxSlotSeries>();
  const slotAttributes = (slotName: string): Record<string, string> => ({
    [keelAttributes.walOutboxSlot]: slotName,
  });
  meter
    .createObservableGauge(metricNames.walOutboxLag, {
      description: "WAL the WAL outbox slot holds: from the position confirmed published to the server's",
      unit: 'By',
    })
    .addCallback(async (result) => {
      await Promise.all(
        [...bySlot].map(async ([slotName, { relays }]) => {
          const db = relays.values().next().value;
          if (db === undefined) return;
          const status = await walOutboxStatus(db, { slotName }).catch(() => undefined);
          if (status?.exists === true) result.observe(status.lagBytes, slotAttributes(slotName));
        }),
      );
    });
  meter
    .createObservableGauge(metricNames.walOutboxBuffered, {
      description: 'WAL outbox messages the relay received and has not yet published',
    })
    .addCallback((result) => {
      for (const [slotName, { relays }] of bySlot) {
        if (relays.size === 0) continue;
        let buffered = 0;
        for (const relay of relays.keys()) buffered += relay.buffered;
        result.observe(buffered, slotAttributes(slotName));
      }
    });
  const counters = observableTotals(meter, keelAttributes.walOutboxSlot, {
    published: {
      name: metricNames.walOutboxPublished,
      description: 'WAL outbox messages the broker accepted',
    },
    publishFailed: {
      name: metricNames.walOutboxPublishFailed,
      description: 'WAL outbox messages in a publish that failed (every try)',
    },
    parked: {
      name: metricNames.walOutboxParked,
      description: 'WAL outbox messages parked in the table outbox after failed publishes',
    },
  });
  const created = {
    of(slotName: string): WalOutboxSlotSeries {
      let series = bySlot.get(slotName);
      if (series === undefined) {
        series = { totals: counters.of(slotName), relays: new Map() };
        bySlot.set(slotName, series);
      }
      return series;
    },
  };
  walOutboxSeriesByMeter.set(meter, created);
  return created;
}
