import { KeelError } from '../errors/index.ts';
import type { ServiceHealth } from './service-health.ts';

/**
 * A `ServiceHealth` as a health endpoint shows it: JSON-safe, times as ISO strings, and the
 * last error reduced to its code. The message stays out: it can name hosts, ports and users,
 * and a readiness endpoint is usually open to anyone who reaches the port (log the message).
 */
export type ServiceHealthReport =
  | { readonly status: 'not-running'; readonly state: string }
  | { readonly status: 'ok'; readonly lastContactAt?: string }
  | {
      readonly status: 'failing';
      readonly dependency: string;
      readonly during?: string;
      readonly since: string;
      readonly failures: number;
      /** The last error's code: a keel code, a system one (`ECONNREFUSED`), else its class name. */
      readonly error?: string;
      readonly lastContactAt?: string;
    };

export function healthReport(health: ServiceHealth): ServiceHealthReport {
  switch (health.status) {
    case 'not-running':
      return { status: 'not-running', state: health.state };
    case 'ok':
      return health.lastContactAt === undefined
        ? { status: 'ok' }
        : { status: 'ok', lastContactAt: isoTime(health.lastContactAt) };
    case 'failing': {
      const error = errorCode(health.lastError);
      return {
        status: 'failing',
        dependency: health.dependency,
        ...(health.during === undefined ? {} : { during: health.during }),
        since: isoTime(health.since),
        failures: health.failures,
        ...(error === undefined ? {} : { error }),
        ...(health.lastContactAt === undefined ? {} : { lastContactAt: isoTime(health.lastContactAt) }),
      };
    }
  }
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

function errorCode(error: unknown): string | undefined {
  if (error === undefined) return undefined;
  if (error instanceof KeelError) return error.code;
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  if (typeof code === 'string' && /^[A-Z0-9_]{2,40}$/.test(code)) return code;
  return error instanceof Error ? error.name : typeof error;
}
