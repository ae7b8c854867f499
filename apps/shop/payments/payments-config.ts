import { InvalidArgumentError } from '../../../src/errors/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import { HttpPaymentProvider } from './http-payment-provider.ts';

/** Which payment provider the shop's saga charges. */
export type PaymentsConfig =
  /** The ledger in the shop's own process and database: `npm start` needs nothing else. */
  { kind: 'in-process' } | { kind: 'http'; url: string; timeoutMs: number };

/**
 * The shop's side of payments, from the environment:
 *
 * - `KEEL_PAYMENTS_URL`: the payment provider service (`npm run payment-provider`); unset, the
 *   shop charges its in-process provider
 * - `KEEL_PAYMENTS_TIMEOUT_MS` (2000): bound on each attempt of a call to it
 */
export function paymentsConfigFromEnv(env: NodeJS.ProcessEnv = process.env): PaymentsConfig {
  const url = env.KEEL_PAYMENTS_URL?.trim();
  if (!url) return { kind: 'in-process' };
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:'))
    throw new InvalidArgumentError(
      'KEEL_PAYMENTS_URL',
      'an http:// or https:// URL such as http://127.0.0.1:4010',
      url,
    );
  const rawTimeout = env.KEEL_PAYMENTS_TIMEOUT_MS?.trim();
  const timeoutMs = rawTimeout ? Number(rawTimeout) : 2000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000)
    throw new InvalidArgumentError(
      'KEEL_PAYMENTS_TIMEOUT_MS',
      'an integer number of ms from 1 to 60000',
      rawTimeout,
    );
  return { kind: 'http', url, timeoutMs };
}

/**
 * The client of the provider service when `KEEL_PAYMENTS_URL` is set, else undefined (the shop
 * then builds its in-process provider). Reads and checks the environment before anything opens.
 */
export function paymentsFromEnv(env: NodeJS.ProcessEnv, clock: Clock): HttpPaymentProvider | undefined {
  const config = paymentsConfigFromEnv(env);
  return config.kind === 'http'
    ? new HttpPaymentProvider({ url: config.url, timeoutMs: config.timeoutMs, clock })
    : undefined;
}
