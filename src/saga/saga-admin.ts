// What operators and dashboards ask of the saga tables: list, show, retry a parked instance,
// count by state, prune finished ones. None of it needs a lease.
import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError, NotFoundError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { historyFromRow, type HistoryRow, type SagaHistoryEntry } from './saga-history.ts';
import {
  fromRow,
  instanceColumns,
  readInstance,
  sagaStates,
  type InstanceRow,
  type SagaInstance,
  type SagaState,
} from './saga-store.ts';
import { sagaChannel } from './schema.ts';

export interface ListSagasOptions {
  state?: SagaState;
  saga?: string;
  /** Most rows, newest first. Default 100. */
  limit?: number;
}

/** Instances, newest first, optionally of one state or saga; each one's `results` in step order. */
export async function listSagas(q: Queryable, options: ListSagasOptions = {}): Promise<SagaInstance[]> {
  if (options.state !== undefined && !sagaStates.includes(options.state)) {
    throw new InvalidArgumentError('state', sagaStates.join(', '), options.state);
  }
  const limit = options.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1)
    throw new InvalidArgumentError('limit', 'an integer >= 1', limit);
  const { rows } = await q.query<InstanceRow>(
    `SELECT ${instanceColumns} FROM keel_saga_instances i
     WHERE ($1::text IS NULL OR i.state = $1) AND ($2::text IS NULL OR i.saga_name = $2)
     ORDER BY i.created_at DESC, i.id DESC LIMIT $3`,
    [options.state ?? null, options.saga ?? null, limit],
  );
  return rows.map(fromRow);
}

/**
 * One instance and its history, oldest entry first; `KEEL_NOT_FOUND` when there is none.
 * `instance.results` lists the steps in the order they completed (the definition's order), and
 * each history entry is typed by its `event` (see `SagaHistoryKinds`).
 */
export async function getSaga(
  q: Queryable,
  id: string,
): Promise<{ instance: SagaInstance; history: SagaHistoryEntry[] }> {
  if (typeof id !== 'string' || id === '') throw new InvalidArgumentError('id', 'a saga instance id', id);
  const instance = await readInstance(q, id);
  if (instance === undefined) throw new NotFoundError('saga instance', id);
  const history = await q.query<HistoryRow>(
    `SELECT * FROM keel_saga_history WHERE instance_id = $1 ORDER BY seq`,
    [id],
  );
  return { instance, history: history.rows.map(historyFromRow) };
}

/**
 * Gives a parked instance (NEEDS_ATTENTION) back to the runners: it resumes compensating at the
 * compensation that was parked, with fresh attempts. `KEEL_NOT_FOUND` for an unknown id;
 * `KEEL_INVALID_ARGUMENT` when the instance is not parked.
 */
export async function retrySaga(
  q: Queryable,
  id: string,
  options: { clock?: Clock; by?: string } = {},
): Promise<void> {
  if (typeof id !== 'string' || id === '') throw new InvalidArgumentError('id', 'a saga instance id', id);
  const now = new Date((options.clock ?? systemClock).now());
  const { rows } = await q.query<{ state: SagaState; retried: boolean }>(
    `WITH current AS (SELECT id, state FROM keel_saga_instances WHERE id = $1 FOR UPDATE),
     updated AS (
       UPDATE keel_saga_instances i
       SET state = 'COMPENSATING', attempts = 0, last_error = NULL, wake_at = $2, updated_at = $2,
           lease_owner = NULL, lease_until = NULL
       FROM current WHERE i.id = current.id AND current.state = 'NEEDS_ATTENTION' RETURNING i.id),
     history AS (
       INSERT INTO keel_saga_history (instance_id, at, event, owner)
       SELECT id, $2, 'retried-by-operator', $3 FROM updated),
     notified AS (SELECT pg_notify($4, '') FROM updated)
     SELECT current.state, EXISTS (SELECT 1 FROM notified) AS retried FROM current`,
    [id, now, options.by ?? null, sagaChannel],
  );
  const row = rows[0];
  if (row === undefined) throw new NotFoundError('saga instance', id);
  if (!row.retried) {
    throw new InvalidArgumentError(`saga instance ${id}`, 'an instance in NEEDS_ATTENTION', row.state);
  }
}

/**
 * Deletes finished instances (COMPLETED, COMPENSATED) that finished more than `retentionMs` ago
 * (default 30 days), with their history, `batchSize` per statement so a large backlog never holds
 * long locks. Parked and running instances are never deleted. Returns how many it deleted.
 */
export async function pruneSagas(
  q: Queryable,
  options: { retentionMs?: number; batchSize?: number; clock?: Clock } = {},
): Promise<number> {
  const retentionMs = options.retentionMs ?? 30 * 24 * 3600 * 1000;
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isFinite(retentionMs) || retentionMs < 0) {
    throw new InvalidArgumentError('retentionMs', 'a number of ms >= 0', retentionMs);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', 'an integer >= 1', batchSize);
  }
  const cutoff = new Date((options.clock ?? systemClock).now() - retentionMs);
  let total = 0;
  for (;;) {
    const { rowCount } = await q.query(
      `DELETE FROM keel_saga_instances WHERE id IN (
         SELECT id FROM keel_saga_instances
         WHERE state IN ('COMPLETED', 'COMPENSATED') AND finished_at < $1 LIMIT $2)`,
      [cutoff, batchSize],
    );
    total += rowCount;
    if (rowCount < batchSize) return total;
  }
}

/** How many instances are in each state: for a gauge, and for an operator's overview. */
export async function countSagasByState(q: Queryable): Promise<Record<SagaState, number>> {
  const { rows } = await q.query<{ state: SagaState; n: number }>(
    'SELECT state, count(*)::int AS n FROM keel_saga_instances GROUP BY state',
  );
  const counts = Object.fromEntries(sagaStates.map((s) => [s, 0])) as Record<SagaState, number>;
  for (const row of rows) counts[row.state] = row.n;
  return counts;
}
