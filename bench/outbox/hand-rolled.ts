// The outbox poller most services write by hand, with the raw pg driver: in one transaction,
// SELECT ... FOR UPDATE SKIP LOCKED LIMIT n, publish, UPDATE published_at, COMMIT; sleep when
// there was nothing. The publish is awaited before the mark commits, as keel's is: at-least-once,
// the same durability. It holds the transaction (and its row locks) while publishing, keeps no
// per-key order across pollers, and has no backoff, breaker or parking.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Envelope } from '../../src/messaging/index.ts';
import type { Contender, Instance, Publish } from './contender.ts';
import { destination } from './keel.ts';

const schemaSql = `
CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  message_id uuid NOT NULL,
  destination text NOT NULL,
  type text NOT NULL,
  key text,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL,
  occurred_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;`;

interface Row {
  id: string;
  message_id: string;
  destination: string;
  type: string;
  key: string | null;
  payload: unknown;
  headers: Record<string, string>;
  occurred_at: Date;
}

export function handRolledContender(batchSize: number, pollMs: number): Contender {
  return {
    name: 'hand-rolled',
    how: `raw pg: BEGIN; SELECT … FOR UPDATE SKIP LOCKED LIMIT ${batchSize}; publish; UPDATE published_at; COMMIT; ${pollMs} ms sleep when empty`,
    async open(schema, url, publish) {
      const options = { connectionString: url, options: `-c search_path=${schema}` };
      const pool = new pg.Pool({ ...options, max: 10 });
      await pool.query(schemaSql);
      return new HandRolled(pool, options, publish, batchSize, pollMs);
    },
  };
}

class HandRolled implements Instance {
  readonly #pollers: Promise<void>[] = [];
  readonly #clients: pg.Client[] = [];
  #stopping = false;

  constructor(
    readonly pool: pg.Pool,
    readonly options: pg.ClientConfig,
    readonly publish: Publish,
    readonly batchSize: number,
    readonly pollMs: number,
  ) {}

  async commit(messages: readonly Envelope[]): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO outbox (message_id, destination, type, key, payload, headers, occurred_at)
         SELECT m.id, $1, m.type, m.key, m.payload, m.headers, m."occurredAt"
         FROM jsonb_to_recordset($2::jsonb)
           AS m(id uuid, type text, key text, payload jsonb, headers jsonb, "occurredAt" timestamptz)`,
        [destination, JSON.stringify(messages)],
      );
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
  }

  async startRelays(relays: number): Promise<void> {
    for (let i = 0; i < relays; i++) {
      const client = new pg.Client(this.options);
      await client.connect();
      this.#clients.push(client);
      this.#pollers.push(this.#poll(client));
    }
  }

  async #poll(client: pg.Client): Promise<void> {
    while (!this.#stopping) {
      await client.query('BEGIN');
      try {
        const { rows } = await client.query<Row>(
          `SELECT id, message_id, destination, type, key, payload, headers, occurred_at FROM outbox
           WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
          [this.batchSize],
        );
        if (rows.length > 0) {
          await this.publish(
            destination,
            rows.map((r) => ({
              id: r.message_id,
              type: r.type,
              key: r.key,
              payload: r.payload,
              headers: r.headers,
              occurredAt: r.occurred_at.toISOString(),
            })),
          );
          await client.query('UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])', [
            rows.map((r) => r.id),
          ]);
        }
        await client.query('COMMIT');
        if (rows.length === 0) await sleep(this.pollMs);
      } catch (error) {
        await client.query('ROLLBACK');
        console.error('hand-rolled poller error', error);
        await sleep(this.pollMs);
      }
    }
  }

  async unpublished(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL',
    );
    return rows[0]!.n;
  }

  async close(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#pollers);
    for (const client of this.#clients) await client.end();
    await this.pool.end();
  }
}
