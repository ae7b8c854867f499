import { dbConfigFromEnv } from '../../src/db/index.ts';
import { InvalidArgumentError } from '../../src/errors/index.ts';
import type { TokenBucketLimits } from '../../src/resilience/index.ts';
import { parseDuration } from '../../src/time/index.ts';
import { dailySalesSchedule, type DailySalesConfig } from './analytics/daily-sales.ts';
import { mailConfigFromEnv } from './notifications/mail-config.ts';
import type { ShopConfig, ShopOutbox, ShopRole } from './app.ts';

const allRoles: readonly ShopRole[] = ['api', 'worker', 'relay'];

/**
 * Reads the shop's settings from environment variables (12-factor). Every variable has a
 * default that runs the whole shop on this machine; a bad value fails at boot naming it.
 *
 * - `PORT` (3000), `HOST` (127.0.0.1), `KEEL_HTTP_REQUEST_TIMEOUT_MS` (30000; 0 for none): how
 *   long a client has to send a whole request before a 408 closes its connection
 * - `KEEL_ROLES`: comma-separated subset of api,worker,relay (all)
 * - `KEEL_WORKER_CONCURRENCY` (8), `KEEL_WORKER_LEASE_MS` (30000), `KEEL_POLL_INTERVAL_MS` (1000);
 *   the worker's saga runner uses the same concurrency, lease and poll interval
 * - `KEEL_RELAY_BATCH_SIZE` (100); `KEEL_RELAY_CLAIM_MS` (30000): the lease of the rows a relay took,
 *   renewed while it works on them: how soon another relay publishes what a relay that died had
 *   taken (docs/outbox.md)
 * - database: see `dbConfigFromEnv` (`KEEL_DB`, `DATABASE_URL`, `KEEL_DATA_DIR`)
 * - `KEEL_OUTBOX`: `table` (the default) or `wal` — orders' events as logical messages, relayed by
 *   logical decoding; needs `KEEL_DB=pg` and a server with wal_level=logical (docs/outbox.md)
 * - `KEEL_API_KEYS`: `required` (every `/v1/…` request carries a live key) or `off` (the default)
 * - `KEEL_METRICS_PORT`: where a process without the api role serves `/metrics` and health (none)
 * - `KEEL_RATE_LIMIT`: `<burst>/<per second>` per client address on the API (`60/20`), or `off`
 * - `KEEL_STREAM_RETENTION`: how long the order stream keeps an event the analytics model has
 *   applied (`30d`, `12h`, …), or `off` (the default: kept for a rebuild from the first event)
 * - mail: see `mailConfigFromEnv` (`KEEL_SMTP_URL`, else a mailbox folder; `KEEL_MAIL_FROM`)
 * - `KEEL_DAILY_SALES`: the cron on which the worker closes the day before (`5 0 * * *`), or `off`;
 *   `KEEL_TIME_ZONE`: the IANA zone of that cron and of the days (`UTC`)
 */
export function shopConfigFromEnv(env: NodeJS.ProcessEnv = process.env, defaultRoles = allRoles): ShopConfig {
  const pollIntervalMs = integer(env, 'KEEL_POLL_INTERVAL_MS', 1000, 1);
  return {
    roles: roles(env, defaultRoles),
    http: {
      port: integer(env, 'PORT', 3000, 0, 65535),
      host: env.HOST ?? '127.0.0.1',
      // A slow client (or a slowloris) holds a connection no longer than this.
      requestTimeoutMs: integer(env, 'KEEL_HTTP_REQUEST_TIMEOUT_MS', 30_000, 0),
    },
    worker: {
      concurrency: integer(env, 'KEEL_WORKER_CONCURRENCY', 8, 1),
      leaseMs: integer(env, 'KEEL_WORKER_LEASE_MS', 30_000, 100),
      pollIntervalMs,
    },
    relay: {
      pollIntervalMs,
      batchSize: integer(env, 'KEEL_RELAY_BATCH_SIZE', 100, 1),
      claimMs: integer(env, 'KEEL_RELAY_CLAIM_MS', 30_000, 100),
    },
    outbox: outbox(env),
    ...rateLimit(env),
    apiKeys: apiKeys(env),
    mail: mailConfigFromEnv(env),
    ...(env.KEEL_METRICS_PORT?.trim() ? { metricsPort: integer(env, 'KEEL_METRICS_PORT', 0, 0, 65535) } : {}),
    ...streamRetention(env),
    ...dailySales(env),
  };
}

function dailySales(env: NodeJS.ProcessEnv): { dailySales?: DailySalesConfig } {
  const cron = env.KEEL_DAILY_SALES?.trim() || '5 0 * * *';
  if (cron === 'off') return {};
  const config = { cron, timeZone: env.KEEL_TIME_ZONE?.trim() || 'UTC' };
  try {
    dailySalesSchedule(config);
  } catch (error) {
    // defineSchedule names its own fields; the operator set these variables.
    const field = (error as { field?: string }).field?.endsWith('timezone')
      ? 'KEEL_TIME_ZONE'
      : 'KEEL_DAILY_SALES';
    throw new InvalidArgumentError(
      field,
      `a cron expression and an IANA time zone (${(error as Error).message})`,
      field === 'KEEL_TIME_ZONE' ? config.timeZone : cron,
    );
  }
  return { dailySales: config };
}

function streamRetention(env: NodeJS.ProcessEnv): { streamRetentionMs?: number } {
  const raw = env.KEEL_STREAM_RETENTION?.trim() || 'off';
  return raw === 'off' ? {} : { streamRetentionMs: parseDuration(raw, 'KEEL_STREAM_RETENTION') };
}

function apiKeys(env: NodeJS.ProcessEnv): 'required' | 'off' {
  const raw = env.KEEL_API_KEYS?.trim() || 'off';
  if (raw !== 'required' && raw !== 'off')
    throw new InvalidArgumentError('KEEL_API_KEYS', "'required' or 'off'", raw);
  return raw;
}

function rateLimit(env: NodeJS.ProcessEnv): { rateLimit?: TokenBucketLimits } {
  const raw = env.KEEL_RATE_LIMIT?.trim() || '60/20';
  if (raw === 'off') return {};
  const match = /^(\d+)\/(\d+(?:\.\d+)?)$/.exec(raw);
  const capacity = Number(match?.[1]);
  const refillPerSecond = Number(match?.[2]);
  if (match === null || capacity < 1 || refillPerSecond <= 0) {
    throw new InvalidArgumentError('KEEL_RATE_LIMIT', "'<burst>/<per second>' such as 60/20, or 'off'", raw);
  }
  return { rateLimit: { capacity, refillPerSecond } };
}

function outbox(env: NodeJS.ProcessEnv): ShopOutbox {
  const kind = env.KEEL_OUTBOX?.trim() || 'table';
  if (kind === 'table') return { kind };
  if (kind !== 'wal') throw new InvalidArgumentError('KEEL_OUTBOX', "'table' or 'wal'", kind);
  const db = dbConfigFromEnv(env);
  if (db.kind !== 'pg') {
    throw new InvalidArgumentError(
      'KEEL_OUTBOX',
      "'table' with KEEL_DB=pglite: the WAL outbox needs KEEL_DB=pg (a PostgreSQL server with wal_level=logical)",
      kind,
    );
  }
  return { kind, connectionString: db.url };
}

function roles(env: NodeJS.ProcessEnv, fallback: readonly ShopRole[]): ReadonlySet<ShopRole> {
  const raw = env.KEEL_ROLES;
  if (raw === undefined || raw.trim() === '') return new Set(fallback);
  const names = raw.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!allRoles.includes(name as ShopRole)) {
      throw new InvalidArgumentError('KEEL_ROLES', `a comma-separated list of ${allRoles.join(', ')}`, raw);
    }
  }
  return new Set(names as ShopRole[]);
}

function integer(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(name, `an integer from ${min} to ${max}`, raw);
  }
  return value;
}
