import { v7 as uuidv7 } from 'uuid';
import type { Db, Unlisten } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { describeError } from '../messaging/adapters/postgres/pg-queue-source.ts';
import { ServiceBase } from '../service/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import { outboxChannel } from './schema.ts';

export interface OutboxRelayOptions {
  /** Rows claimed and published per round. Default 100. */
  batchSize?: number;
  /** How often to look for rows when no NOTIFY arrives. Default 1 000 ms. */
  pollIntervalMs?: number;
  /** How long a claim is held before another relay may take the rows. Default 30 000 ms. */
  claimMs?: number;
  /** Publish attempts before a row is parked for an operator. Default 10. */
  maxAttempts?: number;
  /** Delay before a failed row is tried again. Default: 1 s doubling to 60 s. */
  retryDelay?: (attempt: number) => number;
  clock?: Clock;
  name?: string;
}

export interface OutboxRelayEvents {
  published: { destination: string; messages: readonly Envelope[] };
  'publish-failed': { destination: string; messages: readonly Envelope[]; error: unknown };
  parked: { message: Envelope; error: unknown };
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

/**
 * Moves committed outbox rows to any `Publisher`. It never knows which broker it feeds.
 *
 * Rows are claimed under a lease with `FOR UPDATE SKIP LOCKED`, so several relays share the
 * work; a row is selected by `published_at IS NULL`, not by a high-water mark, so a row that
 * commits late with a lower id is still picked up. No transaction is held open while
 * publishing. A relay that dies after publishing and before marking leaves the rows to be
 * published again when the claim expires: delivery is at-least-once.
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
  #unlisten: Unlisten | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #pending = false;
  #wakeUp: (() => void) | undefined;

  constructor(db: Db, publisher: Publisher, options: OutboxRelayOptions = {}) {
    super(options.name ?? 'outbox-relay', options.clock ?? systemClock);
    this.#db = db;
    this.#publisher = publisher;
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 100);
    this.#pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.#claimMs = positiveInteger('claimMs', options.claimMs ?? 30_000);
    this.#maxAttempts = positiveInteger('maxAttempts', options.maxAttempts ?? 10);
    this.#retryDelay = options.retryDelay ?? ((attempt) => Math.min(60_000, 1000 * 2 ** (attempt - 1)));
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

  /** Publishes one batch now; returns how many rows it published. For tests and `outbox drain`. */
  async relayOnce(): Promise<number> {
    const rows = await this.#claim();
    if (rows.length === 0) return 0;
    let published = 0;
    for (const [destination, group] of groupByDestination(rows)) {
      published += await this.#publishGroup(destination, group);
    }
    return published;
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
      if (moved > 0 || this.#pending) continue;
      await this.#pause(this.#pollIntervalMs);
    }
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
    const now = this.clock.now();
    const { rows } = await this.#db.query<OutboxRow>(
      `WITH picked AS (
         SELECT seq FROM keel_outbox
         WHERE published_at IS NULL AND parked_at IS NULL AND (available_at IS NULL OR available_at <= $1)
           AND (claim_until IS NULL OR claim_until <= $1)
         ORDER BY seq
         LIMIT $2
         FOR UPDATE SKIP LOCKED)
       UPDATE keel_outbox AS o SET claim_owner = $3, claim_until = $4
       FROM picked WHERE o.seq = picked.seq
       RETURNING o.seq::text AS seq, o.id::text AS id, o.destination, o.type, o.key, o.payload, o.headers,
                 o.occurred_at, o.hlc, o.attempts`,
      [new Date(now), this.#batchSize, this.#owner, new Date(now + this.#claimMs)],
    );
    rows.sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
    return rows;
  }

  async #publishGroup(destination: string, rows: OutboxRow[]): Promise<number> {
    const messages = rows.map(toEnvelope);
    try {
      await this.#publisher.publish(destination, messages);
    } catch (error) {
      this.events.emit('publish-failed', { destination, messages, error });
      await this.#recordFailure(rows, error);
      return 0;
    }
    await this.#db.query(
      `UPDATE keel_outbox SET published_at = $3, claim_owner = NULL, claim_until = NULL
       WHERE seq = ANY($1::bigint[]) AND claim_owner = $2`,
      [rows.map((r) => r.seq), this.#owner, new Date(this.clock.now())],
    );
    this.events.emit('published', { destination, messages });
    return rows.length;
  }

  async #recordFailure(rows: OutboxRow[], error: unknown): Promise<void> {
    const now = this.clock.now();
    const attempt = (rows[0]?.attempts ?? 0) + 1;
    const park = attempt >= this.#maxAttempts;
    await this.#db.query(
      `UPDATE keel_outbox
       SET attempts = attempts + 1, last_error = $3, claim_owner = NULL, claim_until = NULL,
           available_at = $4, parked_at = CASE WHEN attempts + 1 >= $5 THEN $6::timestamptz ELSE NULL END
       WHERE seq = ANY($1::bigint[]) AND claim_owner = $2`,
      [
        rows.map((r) => r.seq),
        this.#owner,
        describeError(error),
        new Date(now + this.#retryDelay(attempt)),
        this.#maxAttempts,
        new Date(now),
      ],
    );
    if (park) for (const row of rows) this.events.emit('parked', { message: toEnvelope(row), error });
  }
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
