// The effect every contender's recurring job makes, and the log of when each one committed.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** The table each contender's effect writes, created in that contender's schema. */
export const effectTableSql = `CREATE TABLE bench_effects (
  schedule text NOT NULL,
  tick timestamptz NOT NULL,
  inserted_at timestamptz NOT NULL DEFAULT clock_timestamp()
)`;

/** The effect: one INSERT of (schedule, tick instant). `schema` qualifies it where no search_path does. */
export const insertEffectSql = (schema?: string): string =>
  `INSERT INTO ${schema === undefined ? '' : `${schema}.`}bench_effects (schedule, tick) VALUES ($1, $2)`;

/** One effect, as the process that made it saw it: its tick, and when its commit returned. */
export interface Effect {
  schedule: string;
  /** The tick the effect was made for, ms since the epoch. */
  tick: number;
  /** `Date.now()` just after the effect's commit returned (same machine clock as the tick). */
  committedAt: number;
  /** Which of several schedulers (1, 2, …) made it, where there are several. */
  by?: number;
}

/** Where a contender reports each effect it made. */
export interface EffectSink {
  record(effect: Effect): void;
}

/** The effects one contender made, as they were reported. */
export class EffectLog implements EffectSink {
  readonly effects: Effect[] = [];

  record(effect: Effect): void {
    this.effects.push(effect);
  }

  forTick(tick: number): Effect[] {
    return this.effects.filter((effect) => effect.tick === tick);
  }

  /** Distinct schedules with an effect for `tick` (a duplicate counts once). */
  count(tick: number): number {
    return new Set(this.forTick(tick).map((effect) => effect.schedule)).size;
  }
}

/** Resolves when `done()` holds or `deadline` (ms since the epoch) passes; returns whether it held. */
export async function until(done: () => boolean, deadline: number): Promise<boolean> {
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
  }
  return true;
}

/** Effects the database holds per (schedule, tick): `rows` distinct pairs, `duplicates` rows beyond one each. */
export async function countStored(
  admin: pg.Client,
  schema: string,
  tick: number,
): Promise<{ rows: number; duplicates: number }> {
  const { rows } = await admin.query<{ rows: number; duplicates: number }>(
    `SELECT count(DISTINCT schedule)::int AS rows, (count(*) - count(DISTINCT schedule))::int AS duplicates
       FROM ${schema}.bench_effects WHERE tick = $1`,
    [new Date(tick)],
  );
  return rows[0] ?? { rows: 0, duplicates: 0 };
}

/**
 * Drops a schema, its partitions first in small batches: pg-boss 10 makes a partition of its
 * job table per queue, and one DROP SCHEMA of hundreds of them takes a lock per table and index
 * in a single transaction, more than the server's shared lock table may hold while others work.
 */
export async function dropSchema(admin: pg.Client, schema: string): Promise<void> {
  const { rows } = await admin.query<{ name: string }>(
    `SELECT c.relname AS name
       FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
    [schema],
  );
  for (let i = 0; i < rows.length; i += 25) {
    const names = rows.slice(i, i + 25).map((row) => `${schema}."${row.name}"`);
    await admin.query(`DROP TABLE IF EXISTS ${names.join(', ')} CASCADE`);
  }
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
}

/** A schema made fresh (dropped first if a run before left it) with the effect table in it. */
export async function freshSchema(admin: pg.Client, schema: string): Promise<void> {
  await dropSchema(admin, schema);
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.query(effectTableSql.replace('bench_effects', `${schema}.bench_effects`));
}

export async function connectAdmin(url: string): Promise<pg.Client> {
  const admin = new pg.Client({ connectionString: url, application_name: 'bench-schedule-admin' });
  await admin.connect();
  return admin;
}
