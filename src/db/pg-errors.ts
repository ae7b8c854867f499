import pg from 'pg';
import { KeelError } from '../errors/index.ts';

/** Where a PostgreSQL server is, as error messages name it. */
export interface ServerAddress {
  host: string;
  port: number;
  /** `PostgreSQL at host:port` */
  label: string;
}

/** Reads host and port from a connection string without ever echoing its password. */
export function describeServer(url: string): ServerAddress {
  let host = 'localhost';
  let port = 5432;
  try {
    const parsed = new URL(url);
    if (parsed.hostname !== '') host = parsed.hostname;
    if (parsed.port !== '') port = Number(parsed.port);
    // `?host=/var/run/postgresql` names a unix socket directory.
    const socket = parsed.searchParams.get('host');
    if (socket !== null && socket !== '') host = socket;
  } catch {
    // An unparsable string still gets a name in messages: node-postgres reports the details.
  }
  return { host, port, label: `PostgreSQL at ${host}:${port}` };
}

const connectionCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  // SQLSTATE: admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections.
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

/**
 * True for failures of the connection rather than of the SQL: the server is down, restarting,
 * unreachable or full. These become `KEEL_DB_UNAVAILABLE`, which retry policies treat as transient.
 */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof KeelError) return error.code === 'KEEL_DB_UNAVAILABLE';
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (connectionCodes.has(code) || code.startsWith('08'))) return true;
  return (
    isReadTimeout(error) ||
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection closed/i.test(
      error.message,
    )
  );
}

/** The server cancelled a statement that ran past its `statement_timeout` (SQLSTATE 57014). */
export function isStatementTimeout(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error as { code?: unknown }).code === '57014' &&
    /statement timeout/.test(error.message)
  );
}

/** node-postgres' `query_timeout` (keel's `queryTimeoutMs`) ran out: the server did not answer in time. */
export function isReadTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout';
}

export function unavailable(server: ServerAddress, cause: unknown): KeelError {
  if (cause instanceof KeelError && cause.code === 'KEEL_DB_UNAVAILABLE') return cause;
  const code = (cause as { code?: unknown } | undefined)?.code;
  const reason =
    cause instanceof Error && cause.message !== ''
      ? cause.message
      : typeof code === 'string'
        ? code
        : String(cause);
  return new KeelError('KEEL_DB_UNAVAILABLE', `${server.label} is unreachable: ${reason}`, {
    cause,
    details: { host: server.host, port: server.port },
  });
}

/** A server-shaped 25P02 (in_failed_sql_transaction) error, for what the server's own answer would have said. */
export function abortedTransactionError(message: string): Error {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.code = '25P02';
  error.severity = 'ERROR';
  return error;
}
