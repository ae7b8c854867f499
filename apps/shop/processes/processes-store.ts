import type { Queryable } from '../../../src/db/index.ts';
import type { PartsHealth } from './parts-health.ts';

/** A circuit breaker of a process as its heartbeat wrote it. Times are epoch ms on that process's clock. */
export interface ProcessBreaker {
  name: string;
  /** `closed`, `open`, `half-open`, `isolated`. */
  state: string;
  /** When it entered that state. */
  since: number;
  /** Open only: when the next call finds it half-open. */
  until?: number;
  /** Open only: why it opened (`consecutive-failures`, …). */
  reason?: string;
}

/** One process start's row in `processes`. Times are epoch ms on the writer's clock. */
export interface ProcessRecord {
  /** A UUIDv7 minted at the start: a restart is a new record. */
  id: string;
  roles: string[];
  host: string;
  pid: number;
  startedAt: number;
  lastSeenAt: number;
  /** How often the process refreshes its row. */
  heartbeatMs: number;
  /** Set by a clean stop; a crashed process leaves it null and its row goes stale. */
  stoppedAt: number | null;
  breakers: ProcessBreaker[];
  /**
   * Its parts' health when last seen, by part name (migration 0009): whether a live process's
   * parts reach their database and broker. `{}` from a process that reports none.
   */
  health: PartsHealth;
}

/** Who a process is, besides its id, as its row says: what its heartbeat knows without reading the row. */
export type ProcessIdentity = Pick<ProcessRecord, 'roles' | 'host' | 'pid' | 'startedAt'>;

/** `live`: it refreshes its row. `stale`: it stopped refreshing without saying so (crashed, hung, cut off). `stopped`: it said it stopped. */
export type ProcessStatus = 'live' | 'stale' | 'stopped';

/** Beats a process may miss before it is called stale: one slow write or a GC pause is not a crash. */
export const missedBeatsBeforeStale = 3;

/** What a reader at `now` (epoch ms) makes of a record. */
export function processStatus(record: ProcessRecord, now: number): ProcessStatus {
  if (record.stoppedAt !== null) return 'stopped';
  return now - record.lastSeenAt > missedBeatsBeforeStale * record.heartbeatMs ? 'stale' : 'live';
}

/**
 * Writes the process's row: creates it on the first beat, refreshes `last_seen_at`, the
 * breakers and the parts' health on the next ones (one statement either way). Creating it again is how a row that was pruned (the process was
 * paused past the retention) comes back; a row already marked stopped stays stopped.
 */
export async function writeHeartbeat(db: Queryable, record: Omit<ProcessRecord, 'stoppedAt'>): Promise<void> {
  await db.query(
    `INSERT INTO processes (id, roles, host, pid, started_at, last_seen_at, heartbeat_ms, breakers, health)
     VALUES ($1, $2::text[], $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)
     ON CONFLICT (id) DO UPDATE
       SET last_seen_at = EXCLUDED.last_seen_at, breakers = EXCLUDED.breakers, health = EXCLUDED.health
       WHERE processes.stopped_at IS NULL`,
    [
      record.id,
      record.roles,
      record.host,
      record.pid,
      new Date(record.startedAt),
      new Date(record.lastSeenAt),
      record.heartbeatMs,
      JSON.stringify(record.breakers),
      JSON.stringify(record.health),
    ],
  );
}

/** Marks the process stopped at `at`, with its breakers and its parts' health as they were at the end. */
export async function markProcessStopped(
  db: Queryable,
  id: string,
  at: number,
  breakers: readonly ProcessBreaker[],
  health: PartsHealth,
): Promise<void> {
  await db.query(
    `UPDATE processes SET stopped_at = $2, last_seen_at = $2, breakers = $3::jsonb, health = $4::jsonb
      WHERE id = $1 AND stopped_at IS NULL`,
    [id, new Date(at), JSON.stringify(breakers), JSON.stringify(health)],
  );
}

/** Deletes the rows of processes, stopped or not, last seen before `before` (epoch ms); returns how many. */
export async function pruneProcesses(db: Queryable, before: number): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM processes WHERE last_seen_at < $1', [new Date(before)]);
  return rowCount;
}

/** Every process row, oldest start first. */
export async function listProcesses(db: Queryable): Promise<ProcessRecord[]> {
  const { rows } = await db.query<{
    id: string;
    roles: string[];
    host: string;
    pid: number;
    started_at: Date;
    last_seen_at: Date;
    heartbeat_ms: number;
    stopped_at: Date | null;
    breakers: ProcessBreaker[];
    health: PartsHealth;
  }>(
    `SELECT id, roles, host, pid, started_at, last_seen_at, heartbeat_ms, stopped_at, breakers, health
       FROM processes ORDER BY started_at, id`,
  );
  return rows.map((row) => ({
    id: row.id,
    roles: row.roles,
    host: row.host,
    pid: row.pid,
    startedAt: row.started_at.getTime(),
    lastSeenAt: row.last_seen_at.getTime(),
    heartbeatMs: row.heartbeat_ms,
    stoppedAt: row.stopped_at === null ? null : row.stopped_at.getTime(),
    breakers: row.breakers,
    health: row.health,
  }));
}
