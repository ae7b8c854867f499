import path from 'node:path';
import { dbConfigFromEnv, defaultDataDir, type DbConfig } from '../../../src/db/index.ts';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import type { FaultSettings } from './fault-plan.ts';

export interface ProviderConfig {
  http: { port: number; host: string };
  faults: FaultSettings;
  db: DbConfig;
}

/**
 * The payment provider service's settings (`npm run payment-provider`), from the environment;
 * a bad value fails at boot naming the variable.
 *
 * - `KEEL_PAYMENTS_PORT` (4010), `HOST` (127.0.0.1)
 * - `KEEL_PAYMENTS_FAIL_RATE` (0): share of requests answered `503`, from 0 to 1
 * - `KEEL_PAYMENTS_STALL_RATE` (0) and `KEEL_PAYMENTS_STALL_MS` (0): share of requests answered
 *   that much later (past the client's timeout: the answer is lost after the charge)
 * - `KEEL_PAYMENTS_DOWN` (`false`): `true` drops every connection without an answer
 * - its ledger: `KEEL_DB=pg` shares the server (`DATABASE_URL`, `KEEL_DB_SCHEMA`); the embedded
 *   PGlite lives in `KEEL_PAYMENTS_DATA_DIR` (`./.keel/payments`), apart from the shop's
 */
export function providerConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ProviderConfig {
  const dataDir = env.KEEL_PAYMENTS_DATA_DIR?.trim() || path.join(defaultDataDir, 'payments');
  return {
    http: { port: integer(env, 'KEEL_PAYMENTS_PORT', 4010, 0, 65535), host: env.HOST?.trim() || '127.0.0.1' },
    faults: {
      failRate: rate(env, 'KEEL_PAYMENTS_FAIL_RATE'),
      stallRate: rate(env, 'KEEL_PAYMENTS_STALL_RATE'),
      stallMs: integer(env, 'KEEL_PAYMENTS_STALL_MS', 0, 0, 600_000),
      down: flag(env, 'KEEL_PAYMENTS_DOWN'),
    },
    db: dbConfigFromEnv({ ...env, KEEL_DATA_DIR: dataDir }),
  };
}

function rate(env: NodeJS.ProcessEnv, name: string): number {
  const raw = env[name]?.trim();
  if (!raw) return 0;
  const value = Number(raw);
  if (!(value >= 0 && value <= 1))
    throw new InvalidArgumentError(name, 'a number from 0 to 1, such as 0.3', raw);
  return value;
}

function flag(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = env[name]?.trim() || 'false';
  if (raw !== 'true' && raw !== 'false') throw new InvalidArgumentError(name, "'true' or 'false'", raw);
  return raw === 'true';
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new InvalidArgumentError(name, `an integer from ${min} to ${max}`, raw);
  return value;
}
