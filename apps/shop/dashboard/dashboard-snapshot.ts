import type { DepthSource } from '../../../src/observability/index.ts';
import type { OutboxStatus } from '../../../src/outbox/index.ts';
import type { SagaState } from '../../../src/saga/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import type { RouteLatencyStats } from './route-latency.ts';

/** A circuit breaker as the dashboard shows it. */
export interface BreakerView {
  name: string;
  /** `closed`, `open`, `half-open`, `isolated`: shown as given. */
  state: string;
}

/** A breaker as its owner reads it: its state as a word, or a breaker's own `CircuitState`. */
export interface BreakerSource {
  readonly name: string;
  readonly state: string | { readonly status: string };
}

export interface QueueView {
  name: string;
  /** Messages waiting: ready, delayed and leased. */
  depth: number;
  /** Seconds the oldest due message has waited; 0 when none is due. */
  lagSeconds: number;
  /** Messages in `<name>.dead-letter`: they gave up and wait for a redrive. */
  deadLetters: number;
}

/** Everything the page shows, read at one instant. A part whose read failed is `null`. */
export interface DashboardSnapshot {
  /** When it was read (ISO 8601). */
  at: string;
  queues: QueueView[] | null;
  outbox: OutboxStatus | null;
  sagas: { byState: Record<SagaState, number>; needAttention: number } | null;
  breakers: BreakerView[] | null;
  latency: RouteLatencyStats[];
  /** The parts that could not be read this time, and why: the page says so rather than go blank. */
  unavailable: { part: 'queues' | 'outbox' | 'sagas' | 'breakers'; error: string }[];
}

/** Where a snapshot's numbers come from; the dashboard's routes pass keel's own read functions. */
export interface DashboardSources {
  clock: Clock;
  /** The queue and the destinations of it to show (dead letters at `<name>.dead-letter`); none without a queue. */
  queue: Required<DepthSource> | undefined;
  queues: readonly string[];
  outbox: () => Promise<OutboxStatus>;
  sagas: () => Promise<Record<SagaState, number>>;
  breakers: () => readonly BreakerSource[];
  latency: () => RouteLatencyStats[];
}

/**
 * Reads every part at once. Each part fails on its own: with the database down the breakers and
 * latency still show, which is when an operator needs the page most.
 */
export async function buildDashboardSnapshot(sources: DashboardSources): Promise<DashboardSnapshot> {
  const unavailable: DashboardSnapshot['unavailable'] = [];
  const attempt = async <T>(
    part: DashboardSnapshot['unavailable'][number]['part'],
    read: () => Promise<T>,
  ) => {
    try {
      return await read();
    } catch (error) {
      unavailable.push({ part, error: error instanceof Error ? error.message : String(error) });
      return null;
    }
  };
  const { queue } = sources;
  const [queues, outbox, sagas, breakers] = await Promise.all([
    attempt('queues', async () => (queue === undefined ? [] : queueViews(queue, sources.queues))),
    attempt('outbox', sources.outbox),
    attempt('sagas', async () => {
      const byState = await sources.sagas();
      return { byState, needAttention: byState.NEEDS_ATTENTION };
    }),
    attempt('breakers', async () =>
      sources.breakers().map(({ name, state }) => ({
        name,
        state: typeof state === 'string' ? state : state.status,
      })),
    ),
  ]);
  unavailable.sort((a, b) => a.part.localeCompare(b.part));
  return {
    at: new Date(sources.clock.now()).toISOString(),
    queues,
    outbox,
    sagas,
    breakers,
    latency: sources.latency(),
    unavailable,
  };
}

function queueViews(queue: Required<DepthSource>, names: readonly string[]): Promise<QueueView[]> {
  return Promise.all(
    names.map(async (name) => {
      const [depth, lagSeconds, deadLetters] = await Promise.all([
        queue.depth(name),
        queue.lag(name),
        queue.depth(`${name}.dead-letter`),
      ]);
      return { name, depth, lagSeconds, deadLetters };
    }),
  );
}
