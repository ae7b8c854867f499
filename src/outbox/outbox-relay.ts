import { v7 as uuidv7 } from 'uuid';
import type { Db, Unlisten } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { describeError } from '../messaging/adapters/postgres/pg-queue-source.ts';
import {
  BrokenCircuitError,
  CircuitBreakerPolicy,
  IsolatedCircuitError,
  isRetryable,
} from '../resilience/index.ts';
import { ServiceBase } from '../service/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import { defaultOutboxRetentionMs, pruneOutbox } from './outbox-retention.ts';
import { outboxChannel } from './schema.ts';

export interface OutboxRelayOptions {
  /** Rows claimed per round (one claim query), published in one call per destination. Default 100. */
  batchSize?: number;
  /** How often to look for rows when no NOTIFY arrives. Default 1 000 ms. */
  pollIntervalMs?: number;
  /**
   * How long a claim is held before another relay may take the rows: longer than a publish can
   * take, or a slow publish and its successor overlap (duplicates, and a key's order at risk).
   * Default 30 000 ms.
   */
  claimMs?: number;
  /**
   * Failed publishes of a row, counted only while the breaker was closed, before the row is
   * parked for an operator (`keel outbox retry`). `maxAttempts: 10` means ten calls. Default 10.
   */
  maxAttempts?: number;
  /** Delay before a row whose publish failed is tried again. Default: 1 s doubling to 60 s. */
  retryDelay?: (attempt: number) => number;
  /**
   * The circuit breaker every publish goes through. While it is open the relay claims nothing
   * and no row's attempts grow, so an outage of the broker does not park the backlog. Default:
   * a breaker that opens after 5 consecutive failed publishes, for 10 s, on the relay's clock.
   */
  breaker?: CircuitBreakerPolicy;
  /**
   * Published rows older than this are deleted by the relay, in batches, one cleaner at a time
   * across relays (an advisory lock). `false`: the relay never deletes (run `pruneOutbox`
   * elsewhere). Default one day.
   */
  retentionMs?: number | false;
  /** How often the relay runs the cleaner. Default 60 000 ms. */
  cleanupIntervalMs?: number;
  clock?: Clock;
  name?: string;
}

export interface OutboxRelayEvents {
  published: { destination: string; messages: readonly Envelope[] };
  /** A publish failed; `charged` is false when it did not count towards parking (breaker not closed). */
  'publish-failed': { destination: string; messages: readonly Envelope[]; error: unknown; charged: boolean };
  parked: { message: Envelope; error: unknown };
  /** The cleaner deleted published rows past the retention. */
  pruned: { deleted: number };
}

interface OutboxRow {
  seq: string;
  id: string;
  destination: string;
  type: string;
  key: string | null;
  payload: unknown;
  headers: Record<string, string>;
  occurred_at: Date | string;
  hlc: string | null;
  attempts: number;
}

/** Serialises claims across relays of one schema, so each claim sees the previous one's rows. */
const claimLock = `SELECT pg_advisory_xact_lock(hashtextextended('keel_outbox_claim:' || current_schema(), 0))`;

/**
 * Moves committed outbox rows to any `Publisher`. It never knows which broker it feeds.
 *
 * Delivery is at-least-once: a relay that dies after publishing and before marking leaves its
 * rows to be published again when the claim expires.
 *
 * No row is skipped: rows are selected by `published_at IS NULL`, never by a high-water mark, so
 * a row that commits late with a lower `seq` than rows already published is still found.
 *
 * Per-key order: a row is claimed only while no earlier row of its (destination, key) is still
 * unpublished and held back — claimed by a relay, waiting to retry, or parked — and claims are
 * serialised by an advisory lock, so several relays never publish one key's rows at once or out
 * of `seq` order. With `addToOutbox`'s key locks, `seq` order within a key is commit order.
 * Messages without a key are not ordered.
 *
 * A failed publish releases the rest of its round unpublished (the next round claims them
 * again, except behind the failed row's key); a row that failed is published alone from then on,
 * so one poison row cannot fail its neighbours' batches.
 */
export class OutboxRelay extends ServiceBase<OutboxRelayEvents> {
  readonly #db: Db;
  readonly #publisher: Publisher;
  readonly #owner = uuidv7();
  readonly #batchSize: number;
  readonly #pollIntervalMs: number;
  readonly #claimMs: number;
  readonly #maxAttempts: number;
  readonly #retryDelay: (attempt: number) => number;
  readonly #retentionMs: number | false;
  readonly #cleanupIntervalMs: number;
  /** The breaker every publish goes through. */
  readonly breaker: CircuitBreakerPolicy;
  #nextCleanupAt: number;
  #unlisten: Unlisten | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #pending = false;
  #wakeUp: (() => void) | undefined;

  constructor(db: Db, publisher: Publisher, options: OutboxRelayOptions = {}) {
    super(options.name ?? 'outbox-relay', options.clock ?? systemClock);
    if (typeof publisher?.publish !== 'function') {
      throw new InvalidArgumentError('publisher', 'a Publisher', publisher);
    }
    this.#db = db;
    this.#publisher = publisher;
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
    this.#pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.#claimMs = positiveInteger('claimMs', options.claimMs ?? 30_000);
    this.#maxAttempts = positiveInteger('maxAttempts', options.maxAttempts ?? 10);
    this.#retryDelay = options.retryDelay ?? ((attempt) => Math.min(60_000, 1000 * 2 ** (attempt - 1)));
    if (typeof this.#retryDelay !== 'function') {
      throw new InvalidArgumentError('retryDelay', 'a function of the attempt number', options.retryDelay);
    }
    const retentionMs = options.retentionMs ?? defaultOutboxRetentionMs;
    if (retentionMs !== false && (!Number.isFinite(retentionMs) || retentionMs < 0)) {
      throw new InvalidArgumentError('retentionMs', 'a number of ms >= 0, or false', retentionMs);
    }
    this.#retentionMs = retentionMs;
    this.#cleanupIntervalMs = positiveInteger('cleanupIntervalMs', options.cleanupIntervalMs ?? 60_000);
    this.#nextCleanupAt = this.clock.now();
    if (options.breaker !== undefined && !(options.breaker instanceof CircuitBreakerPolicy)) {
      throw new InvalidArgumentError('breaker', 'a CircuitBreakerPolicy', options.breaker);
    }
    this.breaker =
      options.breaker ??
      new CircuitBreakerPolicy({
        threshold: { kind: 'consecutive', failures: 5 },
        openMs: 10_000,
        // A message the broker refuses for what it is says nothing about the broker's health.
        handle: (error) => !isPermanent(error),
        clock: this.clock,
      });
  }

  protected override async onStart(): Promise<void> {
    this.#unlisten = await this.#db.listen(outboxChannel, () => this.#wake());
    this.#loop = this.#run();
  }

  protected override async onStop(): Promise<void> {
    // A round in progress finishes: its rows are published and marked, or released by lease.
    this.#stopping = true;
    this.#wake();
    await this.#loop;
    await this.#unlisten?.();
  }

  /**
   * Claims one batch and publishes it; returns how many rows it published. Claims nothing while
   * the breaker is open. For tests and `outbox drain`; a started relay calls it in its loop.
   */
  async relayOnce(): Promise<number> {
    const status = this.breaker.state.status;
    if (status === 'open' || status === 'isolated') return 0;
    const rows = await this.#claim();
    if (rows.length === 0) return 0;
    let published = 0;
    const groups = [...groupByDestination(rows)];
    for (let i = 0; i < groups.length; i++) {
      const [destination, group] = groups[i]!;
      const outcome = await this.#publishGroup(destination, group);
      published += outcome.published;
      if (!outcome.ok) {
        await this.#release(groups.slice(i + 1).flatMap(([, g]) => g));
        break;
      }
    }
    return published;
  }

  /** Runs the cleaner now: deletes published rows past the retention. Returns how many. */
  async prune(): Promise<number> {
    if (this.#retentionMs === false) return 0;
    const deleted = await pruneOutbox(this.#db, { retentionMs: this.#retentionMs, clock: this.clock });
    if (deleted > 0) this.events.emit('pruned', { deleted });
    return deleted;
  }

  #wake(): void {
    this.#pending = true;
    this.#wakeUp?.();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      this.#pending = false;
      let moved = 0;
      try {
        moved = await this.relayOnce();
        failures = 0;
      } catch (error) {
        failures++;
        this.events.emit('error', { error, during: 'relay' });
        await this.#pause(Math.min(30_000, this.#pollIntervalMs * 2 ** Math.min(failures, 5)));
        continue;
      }
      if (this.#retentionMs !== false && this.clock.now() >= this.#nextCleanupAt) {
        this.#nextCleanupAt = this.clock.now() + this.#cleanupIntervalMs;
        await this.prune().catch((error: unknown) => this.events.emit('error', { error, during: 'cleanup' }));
      }
      if (moved > 0 || this.#pending) continue;
      await this.#pause(this.#idleMs());
    }
  }

  /** Until the next poll, or until the breaker lets a probe through if that comes first. */
  #idleMs(): number {
    const state = this.breaker.state;
    if (state.status !== 'open') return this.#pollIntervalMs;
    return Math.max(1, Math.min(this.#pollIntervalMs, state.until - this.clock.now()));
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const done = (): void => {
        this.#wakeUp = undefined;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        resolve();
      };
      this.#wakeUp = done;
      timer = this.clock.setTimeout(done, ms);
      if (this.#stopping) done();
    });
  }

  async #claim(): Promise<OutboxRow[]> {
    const now = new Date(this.clock.now());
    const rows = await this.#db.transaction(async (tx) => {
      // Taken in a statement of its own: the claim's snapshot then starts after the previous
      // claimer committed, and sees its claims. A claim lost in a server crash only makes its
      // rows claimable again, so its commit need not wait for the disk.
      await tx.query(`SET LOCAL synchronous_commit = off; ${claimLock}`);
      const { rows: claimed } = await tx.query<OutboxRow>(
        `WITH held AS (
           -- Rows holding their key back: few (claimed, waiting to retry or parked), found by index.
           SELECT destination, key, min(seq) AS seq FROM keel_outbox
           WHERE published_at IS NULL AND key IS NOT NULL
             AND (claim_owner IS NOT NULL OR available_at IS NOT NULL OR parked_at IS NOT NULL)
             AND (parked_at IS NOT NULL OR available_at > $1 OR claim_until > $1)
           GROUP BY destination, key),
         picked AS (
           SELECT o.seq FROM keel_outbox o
           WHERE o.published_at IS NULL AND o.parked_at IS NULL
             AND (o.available_at IS NULL OR o.available_at <= $1)
             AND (o.claim_until IS NULL OR o.claim_until <= $1)
             AND NOT EXISTS (
               SELECT 1 FROM held h WHERE h.destination = o.destination AND h.key = o.key AND h.seq < o.seq)
           ORDER BY o.seq
           LIMIT $2
           FOR UPDATE OF o SKIP LOCKED)
         UPDATE keel_outbox AS o SET claim_owner = $3, claim_until = $4
         FROM picked WHERE o.seq = picked.seq
         RETURNING o.seq::text AS seq, o.id::text AS id, o.destination, o.type, o.key, o.payload, o.headers,
                   o.occurred_at, o.hlc, o.attempts`,
        [now, this.#batchSize, this.#owner, new Date(now.getTime() + this.#claimMs)],
      );
      return claimed;
    });
    rows.sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
    return rows;
  }

  /**
   * Publishes a destination's rows in `seq` order: runs of rows never tried go in one call, a
   * row that failed before goes alone. Stops at the first failure and releases the rest.
   */
  async #publishGroup(destination: string, rows: OutboxRow[]): Promise<{ published: number; ok: boolean }> {
    let published = 0;
    let start = 0;
    while (start < rows.length) {
      let end = start + 1;
      if (rows[start]!.attempts === 0) while (end < rows.length && rows[end]!.attempts === 0) end++;
      const chunk = rows.slice(start, end);
      if (!(await this.#publishChunk(destination, chunk))) {
        await this.#release(rows.slice(end));
        return { published, ok: false };
      }
      published += chunk.length;
      start = end;
    }
    return { published, ok: true };
  }

  async #publishChunk(destination: string, rows: OutboxRow[]): Promise<boolean> {
    const messages = rows.map(toEnvelope);
    const closedBefore = this.breaker.state.status === 'closed';
    try {
      await this.breaker.execute(() => this.#publisher.publish(destination, messages));
    } catch (error) {
      if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) {
        // Not tried: the rows go back as they were.
        await this.#release(rows);
        return false;
      }
      // In a batch, the refused message could be any of them: each is tried alone next, and
      // only then is a permanent error pinned on one row.
      const permanent = rows.length === 1 && isPermanent(error);
      const charged = closedBefore || permanent;
      this.events.emit('publish-failed', { destination, messages, error, charged });
      await this.#recordFailure(rows, error, charged, permanent);
      return false;
    }
    // A mark lost in a server crash only republishes its rows (at-least-once, as a relay crash
    // does), so its commit need not wait for the disk either.
    // set_config(..., true) lasts for this statement's own transaction.
    await this.#db.query(
      `WITH async AS (SELECT set_config('synchronous_commit', 'off', true) AS v)
       UPDATE keel_outbox SET published_at = $3, claim_owner = NULL, claim_until = NULL
       WHERE seq = ANY($1::bigint[]) AND claim_owner = $2 AND EXISTS (SELECT 1 FROM async)`,
      [rows.map((r) => r.seq), this.#owner, new Date(this.clock.now())],
    );
    this.events.emit('published', { destination, messages });
    return true;
  }

  async #release(rows: readonly OutboxRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.#db.query(
      `UPDATE keel_outbox SET claim_owner = NULL, claim_until = NULL
       WHERE seq = ANY($1::bigint[]) AND claim_owner = $2`,
      [rows.map((r) => r.seq), this.#owner],
    );
  }

  /**
   * Charged (the breaker was closed, so the broker was thought healthy): the attempt counts, and
   * the row is parked at `maxAttempts`. Not charged (a half-open probe failed: the broker is
   * still down): the row only waits, so an outage never parks the backlog. A permanent error
   * (an argument or validation error: no retry can fix it) parks at once.
   */
  async #recordFailure(
    rows: OutboxRow[],
    error: unknown,
    charged: boolean,
    permanent: boolean,
  ): Promise<void> {
    const now = this.clock.now();
    const attempt = (rows[0]?.attempts ?? 0) + (charged ? 1 : 0);
    const park = permanent || (charged && attempt >= this.#maxAttempts);
    await this.#db.query(
      `UPDATE keel_outbox
       SET attempts = attempts + $7, last_error = $3, claim_owner = NULL, claim_until = NULL,
           available_at = $4, parked_at = CASE WHEN $8 OR ($7 > 0 AND attempts + 1 >= $5) THEN $6::timestamptz END
       WHERE seq = ANY($1::bigint[]) AND claim_owner = $2`,
      [
        rows.map((r) => r.seq),
        this.#owner,
        describeError(error),
        new Date(now + this.#retryDelay(Math.max(1, attempt))),
        this.#maxAttempts,
        new Date(now),
        charged ? 1 : 0,
        permanent,
      ],
    );
    if (park) for (const row of rows) this.events.emit('parked', { message: toEnvelope(row), error });
  }
}

/** No retry can fix it: keel's argument or validation errors, also as the cause of a `PublishError`. */
function isPermanent(error: unknown): boolean {
  if (!isRetryable(error)) return true;
  const cause = (error as { cause?: unknown } | null)?.cause;
  return cause !== undefined && !isRetryable(cause);
}

function groupByDestination(rows: OutboxRow[]): Map<string, OutboxRow[]> {
  const groups = new Map<string, OutboxRow[]>();
  for (const row of rows) {
    const group = groups.get(row.destination);
    if (group) group.push(row);
    else groups.set(row.destination, [row]);
  }
  return groups;
}

function toEnvelope(row: OutboxRow): Envelope {
  return {
    id: row.id,
    type: row.type,
    key: row.key,
    payload: row.payload,
    headers: row.headers,
    occurredAt:
      row.occurred_at instanceof Date
        ? row.occurred_at.toISOString()
        : new Date(row.occurred_at).toISOString(),
    ...(row.hlc === null ? {} : { hlc: row.hlc }),
  };
}

function positiveInteger(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(field, 'an integer >= 1', value);
  return value;
}
