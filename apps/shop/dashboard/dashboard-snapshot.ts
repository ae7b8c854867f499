import type { DepthSource } from '../../../src/observability/index.ts';
import type { OutboxStatus } from '../../../src/outbox/index.ts';
import type { SagaState } from '../../../src/saga/index.ts';
import type { ScheduleRow } from '../../../src/schedule/schedule-store.ts';
import type { ServiceHealth } from '../../../src/service/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import { partsHealthReport, type PartsHealth } from '../processes/parts-health.ts';
import {
  processStatus,
  type ProcessIdentity,
  type ProcessRecord,
  type ProcessStatus,
} from '../processes/processes-store.ts';
import type { RouteLatencyStats } from './route-latency.ts';

/** A circuit breaker as the dashboard shows it. */
export interface BreakerView {
  name: string;
  /** `closed`, `open`, `half-open`, `isolated`: shown as given. */
  state: string;
  /** The `id` of the process (in `processes`) it belongs to; absent for this process's when it keeps no row. */
  process?: string;
}

/**
 * A shop process as the dashboard shows it, from its row in `processes`; this process's from what
 * it knows of itself when its row cannot be read (the table down) or is not there (its first beat
 * failed, or is still on its way).
 */
export interface ProcessView {
  id: string;
  roles: string[];
  host: string;
  pid: number;
  /** ISO 8601, on the process's own clock, like `lastSeenAt` and `stoppedAt`. */
  startedAt: string;
  /** Its row's last beat; the snapshot's `at` for this process shown without its row (it serves the page). */
  lastSeenAt: string;
  stoppedAt: string | null;
  /** Judged at the snapshot's `at`: `stale` after three missed beats without a stop. */
  status: ProcessStatus;
  /** The process serving this page. */
  self: boolean;
  /**
   * Its parts' health by part name (`healthReport`): this process's read now, another's as its
   * last beat wrote it, so a stale or stopped process's are what was last known, not live. `{}`
   * from a process that reports none.
   */
  parts: PartsHealth;
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

/** A recurring schedule (keel/schedule) as the dashboard shows it, from its row. */
export interface ScheduleView {
  name: string;
  /** Its timing: `cron 5 0 * * * UTC`, `every 60000`. */
  spec: string;
  /** Judged at the snapshot's `at`: a failing tick waits for its retry; `due` past its tick. */
  state: 'waiting' | 'due' | 'failing' | 'paused';
  /** ISO 8601, like `lastTick`. */
  nextTick: string;
  lastTick: string | null;
  fired: number;
  /** Ticks given up after their attempts. */
  givenUp: number;
  /** The failing tick's attempts so far and its last error; null when none is failing. */
  failing: { attempts: number; error: string; retryAt: string | null } | null;
  /**
   * A run asked for by hand (`keel schedule trigger`) that no scheduler has done yet: its number
   * and when it was asked for (ISO 8601). Null when none is pending.
   */
  runByHand: { run: number; askedAt: string } | null;
  /** The last run by hand a scheduler did, and when; null before the first. */
  lastRunByHand:
    | { run: number; at: string; outcome: 'fired' }
    | { run: number; at: string; outcome: 'failed'; error: string }
    | null;
}

/** Everything the page shows, read at one instant. A part whose read failed is `null`. */
export interface DashboardSnapshot {
  /** When it was read (ISO 8601). */
  at: string;
  queues: QueueView[] | null;
  outbox: OutboxStatus | null;
  sagas: { byState: Record<SagaState, number>; needAttention: number } | null;
  /**
   * The breakers of every live process, each with its `process`: this process's as they are now,
   * the others' as their last beat wrote them. Only this process's when `processes` cannot be read.
   */
  breakers: BreakerView[] | null;
  /**
   * Every process that wrote a row and has not been pruned: live, stale or stopped, oldest start
   * first. This process, when it knows who it is (`DashboardSources.identity`), is there, live, even
   * without its row: among the others' when its own is missing, alone when `processes` cannot be
   * read. Its parts read now are what an operator needs most then.
   */
  processes: ProcessView[] | null;
  /** Every schedule with a row, by name. */
  schedules: ScheduleView[] | null;
  latency: RouteLatencyStats[];
  /** The parts that could not be read this time, and why: the page says so rather than go blank. */
  unavailable: {
    part: 'queues' | 'outbox' | 'sagas' | 'breakers' | 'processes' | 'schedules';
    error: string;
  }[];
}

/** Where a snapshot's numbers come from; the dashboard's routes pass keel's own read functions. */
export interface DashboardSources {
  clock: Clock;
  /** The queue and the destinations of it to show (dead letters at `<name>.dead-letter`); none without a queue. */
  queue: Required<DepthSource> | undefined;
  queues: readonly string[];
  outbox: () => Promise<OutboxStatus>;
  sagas: () => Promise<Record<SagaState, number>>;
  /** The rows of `processes`: every process's roles, liveness and breakers as its heartbeat wrote them. */
  processes: () => Promise<readonly ProcessRecord[]>;
  /** This process's row id (its heartbeat's), if it keeps one. */
  self?: string;
  /**
   * Who this process is (its heartbeat's `identity()`), with `self`: when its row is not in
   * `processes`, or `processes` cannot be read (it is then shown alone), it is shown from this,
   * with its parts read now. Default: it shows only from its row.
   */
  identity?: () => ProcessIdentity;
  /** The rows of `keel_schedules`. */
  schedules: () => Promise<readonly ScheduleRow[]>;
  /** This process's breakers, read now: fresher than its row, and still there when the database is not. */
  breakers: () => readonly BreakerSource[];
  /**
   * This process's parts' health (`ServiceGroup.healthOfParts`), read now: shown on its row in
   * place of what its last beat wrote, up to a beat old. Default: its row's.
   */
  parts?: () => Readonly<Record<string, ServiceHealth>>;
  latency: () => RouteLatencyStats[];
}

/**
 * Reads every part at once. Each part fails on its own: with the database down this process's
 * breakers and the latency still show, which is when an operator needs the page most.
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
  const [queues, outbox, sagas, rows, own, schedules] = await Promise.all([
    attempt('queues', async () => (queue === undefined ? [] : queueViews(queue, sources.queues))),
    attempt('outbox', sources.outbox),
    attempt('sagas', async () => {
      const byState = await sources.sagas();
      return { byState, needAttention: byState.NEEDS_ATTENTION };
    }),
    attempt('processes', sources.processes),
    attempt('breakers', async () =>
      sources.breakers().map(({ name, state }) => ({
        name,
        state: typeof state === 'string' ? state : state.status,
      })),
    ),
    attempt('schedules', sources.schedules),
  ]);
  const now = sources.clock.now();
  const { self } = sources;
  let breakers: BreakerView[] | null;
  let processes: ProcessView[] | null;
  if (rows === null) {
    breakers = own === null ? null : labelled(own, self);
    const alone = ownViewWithoutRow(sources, now);
    processes = alone === null ? null : [alone];
    // What shows is this process's only: each card says the others are missing.
    const failed = unavailable.find((u) => u.part === 'processes')!;
    const othersUnknown = `other processes' unknown: ${failed.error}`;
    if (own !== null) unavailable.push({ part: 'breakers', error: othersUnknown });
    if (alone !== null) failed.error = othersUnknown;
  } else {
    breakers = liveBreakers(rows, own, self, now);
    processes = rows.map((row) => processView(row, now, self, ownParts(sources, row.id, row.health)));
    // Its first beat failed, or is on its way: it serves the page, so it is there all the same.
    if (!rows.some((row) => row.id === self)) {
      const unwritten = ownViewWithoutRow(sources, now);
      if (unwritten !== null) inStartOrder(processes, unwritten);
    }
  }
  unavailable.sort((a, b) => a.part.localeCompare(b.part));
  return {
    at: new Date(now).toISOString(),
    queues,
    outbox,
    sagas,
    breakers,
    processes,
    schedules: schedules === null ? null : schedules.map((row) => scheduleView(row, now)),
    latency: sources.latency(),
    unavailable,
  };
}

/**
 * The breakers of the processes live at `now`, in their rows' order. This process's come from
 * `own` (now) instead of its row (up to a beat old), and show even when its row does not (no
 * heartbeat, or one not written yet): it serves the page, so it is alive.
 */
function liveBreakers(
  rows: readonly ProcessRecord[],
  own: BreakerView[] | null,
  self: string | undefined,
  now: number,
): BreakerView[] {
  const views: BreakerView[] = [];
  let ownShown = false;
  for (const row of rows) {
    if (row.id === self && own !== null) {
      views.push(...labelled(own, self));
      ownShown = true;
    } else if (processStatus(row, now) === 'live') {
      views.push(...row.breakers.map(({ name, state }) => ({ name, state, process: row.id })));
    }
  }
  if (!ownShown && own !== null) views.push(...labelled(own, self));
  return views;
}

function labelled(breakers: BreakerView[], process: string | undefined): BreakerView[] {
  return process === undefined ? breakers : breakers.map((breaker) => ({ ...breaker, process }));
}

/**
 * This process's parts read now for its own row; `written` (its row's) for another's, or when
 * they cannot be read now (the row's are at most a beat old: nothing to say the card is
 * unavailable for).
 */
function ownParts(sources: DashboardSources, id: string, written: PartsHealth): PartsHealth {
  if (id !== sources.self || sources.parts === undefined) return written;
  try {
    return partsHealthReport(sources.parts());
  } catch {
    return written;
  }
}

/**
 * This process's view without its row, for when `processes` cannot be read or lacks it: it serves
 * the page, so it is live and seen now, and its parts are read now (none known if they cannot be).
 * Null unless it keeps a row and knows who it is.
 */
function ownViewWithoutRow(sources: DashboardSources, now: number): ProcessView | null {
  const { self, identity } = sources;
  if (self === undefined || identity === undefined) return null;
  let who: ProcessIdentity;
  try {
    who = identity();
  } catch {
    return null;
  }
  return {
    id: self,
    roles: [...who.roles],
    host: who.host,
    pid: who.pid,
    startedAt: new Date(who.startedAt).toISOString(),
    lastSeenAt: new Date(now).toISOString(),
    stoppedAt: null,
    status: 'live',
    self: true,
    parts: ownParts(sources, self, {}),
  };
}

/** Puts `view` among `views` (oldest start first, then by id) where its row would be. */
function inStartOrder(views: ProcessView[], view: ProcessView): void {
  const after = views.findIndex(
    (other) => other.startedAt > view.startedAt || (other.startedAt === view.startedAt && other.id > view.id),
  );
  views.splice(after === -1 ? views.length : after, 0, view);
}

function processView(
  row: ProcessRecord,
  now: number,
  self: string | undefined,
  parts: PartsHealth,
): ProcessView {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    id: row.id,
    roles: row.roles,
    host: row.host,
    pid: row.pid,
    startedAt: iso(row.startedAt),
    lastSeenAt: iso(row.lastSeenAt),
    stoppedAt: row.stoppedAt === null ? null : iso(row.stoppedAt),
    status: processStatus(row, now),
    self: row.id === self,
    parts,
  };
}

function scheduleView(row: ScheduleRow, now: number): ScheduleView {
  const iso = (ms: number): string => new Date(ms).toISOString();
  const failing = row.lastError !== null && row.retryAt !== null;
  const state =
    row.pausedAt !== null ? 'paused' : failing ? 'failing' : row.nextTick <= now ? 'due' : 'waiting';
  return {
    name: row.name,
    spec: row.spec,
    state,
    nextTick: iso(row.nextTick),
    lastTick: row.lastTick === null ? null : iso(row.lastTick),
    fired: row.fired,
    givenUp: row.failed,
    failing: failing
      ? {
          attempts: row.attempts,
          error: row.lastError!,
          retryAt: row.retryAt === null ? null : iso(row.retryAt),
        }
      : null,
    runByHand: row.triggeredAt === null ? null : { run: row.triggers, askedAt: iso(row.triggeredAt) },
    lastRunByHand: lastRunByHand(row),
  };
}

function lastRunByHand(row: ScheduleRow): ScheduleView['lastRunByHand'] {
  if (row.lastTrigger === null || row.lastTriggerDoneAt === null) return null;
  const done = { run: row.lastTrigger, at: new Date(row.lastTriggerDoneAt).toISOString() };
  return row.lastTriggerError === null
    ? { ...done, outcome: 'fired' }
    : { ...done, outcome: 'failed', error: row.lastTriggerError };
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
