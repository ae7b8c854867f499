// The SQL of the saga tables. Every write a runner makes is fenced: it matches the instance's
// lease owner AND epoch, so a runner that lost its lease (paused, partitioned, taken over)
// changes nothing, and its history rows are written in the same statement as the change.
import type { Queryable } from '../db/db.ts';
import { canNotifyAfterCommit } from '../db/notify-after-commit.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { systemClock, type Clock, uuidv7At } from '../time/index.ts';
import type { SagaDefinition } from './definition.ts';
import type { HistoryInit } from './saga-history.ts';
import { refusedText, storableJson, unstorableAt } from './storable-json.ts';
import { sagaChannel, sagaEndedChannel } from './schema.ts';

export type SagaState = 'RUNNING' | 'COMPENSATING' | 'COMPLETED' | 'COMPENSATED' | 'NEEDS_ATTENTION';

export const sagaStates: readonly SagaState[] = [
  'RUNNING',
  'COMPENSATING',
  'COMPLETED',
  'COMPENSATED',
  'NEEDS_ATTENTION',
];

/** A reply to a request step: see `deliverSagaReply`. */
export type SagaReply =
  | { instanceId: string; step: string; ok: true; result?: unknown }
  | { instanceId: string; step: string; ok: false; error: string };

/** An error as stored: plain JSON. */
export interface StoredError {
  message: string;
  code?: string;
  name?: string;
  step?: string;
}

/**
 * The states an instance ends in: it stays there unless an operator retries a parked
 * (NEEDS_ATTENTION) one. `waitForSaga` resolves on them; the write that enters one notifies
 * `sagaEndedChannel`.
 */
export const sagaEndStates: readonly SagaState[] = ['COMPLETED', 'COMPENSATED', 'NEEDS_ATTENTION'];

export interface SagaInstance {
  id: string;
  saga: string;
  version: number;
  state: SagaState;
  /** RUNNING: the step to run next; COMPENSATING / NEEDS_ATTENTION: the step to compensate next. */
  step: number;
  input: unknown;
  /**
   * The results of the completed steps, by step name (JSON, as stored), in the order the steps
   * completed: the definition's order. (A step named like an array index, `"2"`, still comes
   * first: JavaScript orders such keys before the others.)
   */
  results: Record<string, unknown>;
  attempts: number;
  sends: number;
  deadlineAt: Date | null;
  /** The request step whose reply it waits for. */
  waitingFor: string | null;
  reply: SagaReply | null;
  wakeAt: Date;
  leaseOwner: string | null;
  leaseUntil: Date | null;
  leaseEpoch: number;
  failure: StoredError | null;
  lastError: StoredError | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

/** What proves a runner still holds an instance. */
export interface Fence {
  id: string;
  owner: string;
  epoch: number;
}

/** A row of `keel_saga_instances` as the driver returns it. */
export interface InstanceRow {
  id: string;
  saga_name: string;
  saga_version: number;
  state: SagaState;
  step: number;
  input: unknown;
  results: Record<string, unknown>;
  attempts: number;
  sends: number;
  deadline_at: Date | string | null;
  waiting_for: string | null;
  reply: SagaReply | null;
  wake_at: Date | string;
  lease_owner: string | null;
  lease_until: Date | string | null;
  lease_epoch: string | number;
  failure: StoredError | null;
  last_error: StoredError | null;
  created_at: Date | string;
  updated_at: Date | string;
  finished_at: Date | string | null;
  /** The completed steps in the order they completed, where the query selected `instanceColumns`. */
  completed_steps?: string[];
}

/**
 * The columns to read an instance with, from `keel_saga_instances i`: every column, and the
 * completed steps in the order they completed, from the history. `results` is jsonb, which keeps
 * its keys sorted by length and then by bytes, not in the order they were added: `fromRow` puts
 * them back in step order with these.
 */
export const instanceColumns = `i.*, ARRAY(
  SELECT h.step FROM keel_saga_history h
  WHERE h.instance_id = i.id AND h.event = 'step-completed' ORDER BY h.seq) AS completed_steps`;

/** Reads one instance (results in step order), or undefined when there is none. */
export async function readInstance(q: Queryable, id: string): Promise<SagaInstance | undefined> {
  const { rows } = await q.query<InstanceRow>(
    `SELECT ${instanceColumns} FROM keel_saga_instances i WHERE i.id = $1`,
    [id],
  );
  return rows[0] === undefined ? undefined : fromRow(rows[0]);
}

/** An instance as a wait reads it: its state, and all of it once that state is an end. */
export interface WaitedInstance {
  state: SagaState;
  /** The instance (results in step order) when `state` is one of `sagaEndStates`; else undefined. */
  ended: SagaInstance | undefined;
}

/** A row of the waits' read: the waited instance's id and state, the rest null unless it has ended. */
type WaitedRow = { waited_id: string; waited_state: SagaState } & (InstanceRow | { id: null });

/**
 * Reads the instances of `ids` in one statement, by primary key, for the waits of `waitForSaga`:
 * an id without an instance is absent. Of an instance that still runs it reads the state alone: a
 * wait needs no more of it, and an instance's completed steps (its history) are what a read
 * costs most, tick after tick while thousands of waits poll.
 *
 * A row that cannot be decoded (a hand-written UPDATE left `results` no object, say) throws, or,
 * given `onUnreadable`, is passed to it with its error and left out: the statement answered, and
 * the other rows are good.
 */
export async function readWaitedInstances(
  q: Queryable,
  ids: readonly string[],
  onUnreadable?: (id: string, error: unknown) => void,
): Promise<Map<string, WaitedInstance>> {
  if (ids.length === 0) return new Map();
  // OFFSET 0 keeps the subquery from being flattened into the join: flattened, it builds the
  // completed steps of every row before the join's condition drops the running ones.
  const { rows } = await q.query<WaitedRow>(
    `SELECT w.id AS waited_id, w.state AS waited_state, e.*
     FROM keel_saga_instances w LEFT JOIN LATERAL (
       SELECT ${instanceColumns} FROM keel_saga_instances i
       WHERE i.id = w.id AND w.state = ANY($2::text[]) OFFSET 0) e ON true
     WHERE w.id = ANY($1::text[])`,
    [[...ids], [...sagaEndStates]],
  );
  const found = new Map<string, WaitedInstance>();
  for (const row of rows) {
    let ended: SagaInstance | undefined;
    try {
      ended = row.id === null ? undefined : fromRow(row);
    } catch (error) {
      if (onUnreadable === undefined) throw error;
      onUnreadable(row.waited_id, error);
      continue;
    }
    found.set(row.waited_id, { state: row.waited_state, ended });
  }
  return found;
}

/** `results` with its keys in the order of `steps`, then any others in the order they came. */
export function resultsInStepOrder(
  results: Record<string, unknown>,
  steps: readonly string[],
): Record<string, unknown> {
  const ordered: Record<string, unknown> = {};
  for (const step of steps) if (Object.hasOwn(results, step)) ordered[step] = results[step];
  for (const [step, result] of Object.entries(results))
    if (!Object.hasOwn(ordered, step)) ordered[step] = result;
  return ordered;
}

export const date = (value: Date | string): Date => (value instanceof Date ? value : new Date(value));
const maybeDate = (value: Date | string | null): Date | null => (value === null ? null : date(value));

export function fromRow(row: InstanceRow): SagaInstance {
  return {
    id: row.id,
    saga: row.saga_name,
    version: row.saga_version,
    state: row.state,
    step: row.step,
    input: row.input,
    results:
      row.completed_steps === undefined ? row.results : resultsInStepOrder(row.results, row.completed_steps),
    attempts: row.attempts,
    sends: row.sends,
    deadlineAt: maybeDate(row.deadline_at),
    waitingFor: row.waiting_for,
    reply: row.reply,
    wakeAt: date(row.wake_at),
    leaseOwner: row.lease_owner,
    leaseUntil: maybeDate(row.lease_until),
    leaseEpoch: Number(row.lease_epoch),
    failure: row.failure,
    lastError: row.last_error,
    createdAt: date(row.created_at),
    updatedAt: date(row.updated_at),
    finishedAt: maybeDate(row.finished_at),
  };
}

/** Any error as plain JSON for the history and `last_error`. */
export function storedError(error: unknown, step?: string): StoredError {
  const out: StoredError = { message: error instanceof Error ? error.message : String(error) };
  if (error instanceof Error) out.name = error.name;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') out.code = code;
  if (step !== undefined) out.step = step;
  return out;
}

const json = (value: unknown): string => JSON.stringify(value ?? null);
const idPattern = /^[A-Za-z0-9_.:@-]{1,200}$/;

export interface StartSagaOptions {
  /** The instance id, to make the start idempotent (an order id). Default: a fresh UUIDv7. */
  id?: string;
  clock?: Clock;
}

/**
 * Starts an instance of `definition` with `input`, in the caller's transaction (`tx` may be a
 * `Db` too), so it starts if and only if the caller's writes commit. A start with an id that
 * already exists changes nothing and says `created: false`. Runners pick it up at once (NOTIFY)
 * or at their next poll. The input must be JSON.
 */
export async function startSaga<I>(
  tx: Queryable,
  definition: SagaDefinition<I>,
  input: I,
  options: StartSagaOptions = {},
): Promise<{ id: string; created: boolean }> {
  if (definition === null || typeof definition !== 'object' || typeof definition.key !== 'string') {
    throw new InvalidArgumentError('definition', 'a saga definition from defineSaga', definition);
  }
  const now = (options.clock ?? systemClock).now();
  const id = options.id ?? uuidv7At(now);
  if (typeof id !== 'string' || !idPattern.test(id)) {
    throw new InvalidArgumentError('id', 'an id of [A-Za-z0-9_.:@-], 1-200 characters', id);
  }
  // Checked here: a BigInt or a cycle would throw a bare TypeError, a function break a NOT NULL
  // constraint, a U+0000 fail the INSERT inside the caller's transaction.
  const inputJson = storableJson(input ?? null, 'input');
  const at = new Date(now);
  const { rows } = await tx.query<{ id: string }>(
    `WITH created AS (
       INSERT INTO keel_saga_instances (id, saga_name, saga_version, state, input, wake_at, created_at, updated_at)
       VALUES ($1, $2, $3, 'RUNNING', $4::jsonb, $5, $5, $5)
       ON CONFLICT (id) DO NOTHING RETURNING id),
     history AS (
       INSERT INTO keel_saga_history (instance_id, at, event, detail)
       SELECT id, $5, 'created', jsonb_build_object('saga', $2::text, 'version', $3::int) FROM created)
     SELECT id, pg_notify($6, '') FROM created`,
    [id, definition.name, definition.version, inputJson, at, sagaChannel],
  );
  return { id, created: rows.length > 0 };
}

/**
 * Takes up to `limit` due instances whose definition this runner has (`keys`: `name@version`),
 * whose lease is free or expired, and leases them to `owner` until `leaseUntil` with a new epoch.
 * A takeover (the lease had another owner) is written to the history.
 */
export async function claimSagas(
  q: Queryable,
  claim: { owner: string; keys: readonly string[]; limit: number; now: number; leaseMs: number },
): Promise<{ instance: SagaInstance; takenFrom: string | null }[]> {
  const now = new Date(claim.now);
  const { rows } = await q.query<InstanceRow & { taken_from: string | null }>(
    `WITH due AS (
       SELECT id, lease_owner AS taken_from FROM keel_saga_instances
       WHERE state IN ('RUNNING', 'COMPENSATING') AND wake_at <= $1
         AND (lease_until IS NULL OR lease_until < $1)
         AND (saga_name || '@' || saga_version) = ANY($2::text[])
       ORDER BY wake_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
     claimed AS (
       UPDATE keel_saga_instances i
       SET lease_owner = $4, lease_until = $5, lease_epoch = i.lease_epoch + 1, updated_at = $1
       FROM due WHERE i.id = due.id
       RETURNING i.*, due.taken_from),
     history AS (
       INSERT INTO keel_saga_history (instance_id, at, event, owner, detail)
       SELECT id, $1, 'lease-taken-over', $4, jsonb_build_object('from', taken_from, 'epoch', lease_epoch)
       FROM claimed WHERE taken_from IS NOT NULL AND taken_from <> $4)
     SELECT * FROM claimed ORDER BY wake_at, id`,
    [now, [...claim.keys], claim.limit, claim.owner, new Date(claim.now + claim.leaseMs)],
  );
  return rows.map((row) => ({ instance: fromRow(row), takenFrom: row.taken_from }));
}

/** The columns a fenced write may set. */
export interface ProgressChange {
  state?: SagaState;
  step?: number;
  /** Merged into `results` (one step's result, by step name). */
  mergeResults?: Record<string, unknown>;
  attempts?: number;
  sends?: number;
  deadlineAt?: Date | null;
  waitingFor?: string | null;
  reply?: SagaReply | null;
  wakeAt?: Date;
  /** Gives the lease back: any runner may take the instance once it is due. */
  release?: boolean;
  failure?: StoredError | null;
  lastError?: StoredError | null;
  finishedAt?: Date | null;
}

/**
 * Writes `change` and `history` in one statement if, and only if, `fence` still holds the lease
 * (owner and epoch match). Returns false when it does not: the caller lost the instance and must
 * stop working on it.
 */
export async function writeProgress(
  q: Queryable,
  fence: Fence,
  now: number,
  change: ProgressChange,
  history: readonly HistoryInit[],
): Promise<boolean> {
  const params: unknown[] = [fence.id, fence.owner, fence.epoch, new Date(now)];
  const sets: string[] = ['updated_at = $4'];
  const set = (column: string, value: unknown, cast = ''): void => {
    params.push(value);
    sets.push(`${column} = $${params.length}${cast}`);
  };
  if (change.state !== undefined) set('state', change.state);
  if (change.step !== undefined) set('step', change.step);
  if (change.mergeResults !== undefined) {
    params.push(json(change.mergeResults));
    sets.push(`results = results || $${params.length}::jsonb`);
  }
  if (change.attempts !== undefined) set('attempts', change.attempts);
  if (change.sends !== undefined) set('sends', change.sends);
  if (change.deadlineAt !== undefined) set('deadline_at', change.deadlineAt);
  if (change.waitingFor !== undefined) set('waiting_for', change.waitingFor);
  if (change.reply !== undefined) set('reply', change.reply === null ? null : json(change.reply), '::jsonb');
  if (change.wakeAt !== undefined) set('wake_at', change.wakeAt);
  if (change.release === true) sets.push('lease_owner = NULL', 'lease_until = NULL');
  if (change.failure !== undefined)
    set('failure', change.failure === null ? null : json(change.failure), '::jsonb');
  if (change.lastError !== undefined)
    set('last_error', change.lastError === null ? null : json(change.lastError), '::jsonb');
  if (change.finishedAt !== undefined) set('finished_at', change.finishedAt);
  params.push(
    json(
      history.map((h) => ({
        event: h.event,
        step: h.step ?? null,
        attempt: h.attempt ?? null,
        detail: h.detail ?? null,
      })),
    ),
  );
  const historyParam = params.length;
  // The write that ends the instance tells waiters in every process (waitForSaga), on commit:
  // after it in a keel transaction (a NOTIFY inside would serialise the runners' commits), else
  // inside it.
  const ends = change.state !== undefined && sagaEndStates.includes(change.state);
  const notifyLater = ends && canNotifyAfterCommit(q);
  const notifyInside = ends && !notifyLater;
  if (notifyInside) params.push(sagaEndedChannel);
  const { rows } = await q.query<{ id: string }>(
    `WITH updated AS (
       UPDATE keel_saga_instances SET ${sets.join(', ')}
       WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 RETURNING id),
     history AS (
       INSERT INTO keel_saga_history (instance_id, at, event, step, attempt, owner, detail)
       SELECT updated.id, $4, h.item->>'event', h.item->>'step', (h.item->>'attempt')::int, $2,
              NULLIF(h.item->'detail', 'null'::jsonb)
       FROM updated, jsonb_array_elements($${historyParam}::jsonb) WITH ORDINALITY AS h(item, ord)
       ORDER BY h.ord)
     SELECT id${notifyInside ? `, pg_notify($${params.length}, id)` : ''} FROM updated`,
    params,
  );
  const written = rows.length > 0;
  if (written && notifyLater) q.notifyAfterCommit(sagaEndedChannel, fence.id);
  return written;
}

/** Reads one instance inside a transaction, locking it, if `fence` still holds it. */
export async function lockFenced(tx: Queryable, fence: Fence): Promise<SagaInstance | undefined> {
  const { rows } = await tx.query<InstanceRow>(
    `SELECT * FROM keel_saga_instances WHERE id = $1 AND lease_owner = $2 AND lease_epoch = $3 FOR UPDATE`,
    [fence.id, fence.owner, fence.epoch],
  );
  return rows[0] === undefined ? undefined : fromRow(rows[0]);
}

/** Extends the leases `owner` still holds; returns the ids it still holds (the others were lost). */
export async function extendLeases(
  q: Queryable,
  owner: string,
  leases: readonly { id: string; epoch: number }[],
  until: number,
): Promise<Set<string>> {
  if (leases.length === 0) return new Set();
  const { rows } = await q.query<{ id: string }>(
    `UPDATE keel_saga_instances i SET lease_until = $2
     FROM unnest($3::text[], $4::bigint[]) AS l(id, epoch)
     WHERE i.id = l.id AND i.lease_epoch = l.epoch AND i.lease_owner = $1
     RETURNING i.id`,
    [owner, new Date(until), leases.map((l) => l.id), leases.map((l) => l.epoch)],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * Hands a reply to the instance waiting for it, in the caller's transaction (the consumer's,
 * together with its inbox record). Accepted only while the instance runs and waits on that step;
 * a late reply (the deadline passed and the step failed, or a duplicate after the step moved
 * on) returns false and changes nothing. A reply the instance cannot keep is refused with
 * `KEEL_INVALID_ARGUMENT` naming the field, before anything is written.
 */
export async function deliverSagaReply(
  tx: Queryable,
  reply: SagaReply,
  options: { clock?: Clock } = {},
): Promise<boolean> {
  const stored = storableReply(reply);
  const now = new Date((options.clock ?? systemClock).now());
  const { rows } = await tx.query(
    `WITH updated AS (
       UPDATE keel_saga_instances SET reply = $2::jsonb, wake_at = $3, updated_at = $3
       WHERE id = $1 AND state = 'RUNNING' AND waiting_for = $4 AND reply IS NULL
       RETURNING id),
     history AS (
       INSERT INTO keel_saga_history (instance_id, at, event, step, detail)
       SELECT id, $3, 'reply-received', $4, jsonb_build_object('ok', $5::boolean) FROM updated)
     SELECT pg_notify($6, '') FROM updated`,
    [reply.instanceId, stored, now, reply.step, reply.ok, sagaChannel],
  );
  return rows.length > 0;
}

/**
 * `reply` as the JSON text the instance keeps: its four fields only (a consumer may pass the
 * whole message), each checked, so that a bad reply fails here, typed, and not as a database
 * error in the consumer's transaction or, for an error that is no string, as a step failure
 * whose message is "undefined".
 */
function storableReply(reply: SagaReply): string {
  if (reply === null || typeof reply !== 'object')
    throw new InvalidArgumentError('reply', 'an object', reply);
  for (const field of ['instanceId', 'step'] as const) {
    const value: unknown = reply[field];
    if (typeof value !== 'string' || value === '') {
      throw new InvalidArgumentError(`reply.${field}`, 'a non-empty string', value);
    }
    if (unstorableAt(value) !== undefined) throw new InvalidArgumentError(`reply.${field}`, refusedText);
  }
  const ok: unknown = reply.ok;
  if (typeof ok !== 'boolean') throw new InvalidArgumentError('reply.ok', 'a boolean', ok);
  if (!reply.ok) {
    const error: unknown = reply.error;
    if (typeof error !== 'string') throw new InvalidArgumentError('reply.error', 'a string', error);
    if (unstorableAt(error) !== undefined) throw new InvalidArgumentError('reply.error', refusedText);
    return JSON.stringify({ instanceId: reply.instanceId, step: reply.step, ok, error });
  }
  if (reply.result === undefined)
    return JSON.stringify({ instanceId: reply.instanceId, step: reply.step, ok });
  const result = storableJson(reply.result, 'reply.result');
  // The result's text as JSON.stringify made it: its toJSON ran once, and is not run again.
  return `{"instanceId":${JSON.stringify(reply.instanceId)},"step":${JSON.stringify(reply.step)},"ok":true,"result":${result}}`;
}
