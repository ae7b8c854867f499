import type { Meter, ObservableResult } from '@opentelemetry/api';
import type { Queryable } from '../db/db.ts';
import { outboxStatus } from '../outbox/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { messagingAttributes as m, metricNames } from './names.ts';

/**
 * Observable gauges read at each collection (each `/metrics` scrape), one query each time:
 * `keel.outbox.backlog` (rows committed, not yet published), `keel.outbox.parked`, and
 * `keel.outbox.oldest_unpublished_age` (s): the number to alert on when a relay is down.
 * A failing query reports nothing for that scrape rather than failing the scrape.
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
    const status = await outboxStatus(db, clock).catch(() => undefined);
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
