import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import {
  createPgProcessHost,
  freePort,
  logTails,
  requirePgBinaries,
  resolvePgBinDir,
} from './pg-server-process.ts';

export interface PgServerOptions {
  /** Where initdb, pg_ctl and postgres are. Default `KEEL_PG_BIN`, else `/usr/lib/postgresql/15/bin`. */
  binDir?: string;
  /** The server's port. Default: a free port. */
  port?: number;
  /**
   * `logical` (the default) also allows 10 replication slots and WAL senders and replication
   * connections from 127.0.0.1, so logical decoding works.
   */
  walLevel?: 'replica' | 'logical';
  /**
   * Default false: test data needs no crash safety. A benchmark passes true (which also sets
   * `synchronous_commit = on`) so that a commit costs what it does on a real server.
   */
  fsync?: boolean;
  /** Default 60. */
  maxConnections?: number;
  /** Further postgresql.conf settings; they come last, so they win. Strings are quoted. */
  settings?: Record<string, string | number>;
  /** How long starting the server may take. Default 30 000 ms. */
  startTimeoutMs?: number;
}

/** One PostgreSQL server of its own, in a temp directory. */
export interface PgServer extends AsyncDisposable {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, trust auth. */
  readonly url: string;
  readonly port: number;
  /** The temp directory holding the data directory (`data`) and the log (`server.log`). */
  readonly dir: string;
  /** Stops the server (`pg_ctl stop -m immediate`) and deletes the directory. Idempotent. */
  stop(): Promise<void>;
}

const requiredBinaries = ['initdb', 'pg_ctl', 'postgres'] as const;
const settingName = /^[a-z_][a-z0-9_.]*$/i;

/**
 * Starts one PostgreSQL server (trust auth, listening on 127.0.0.1 only, `wal_level=logical` unless
 * told otherwise) and resolves once it accepts connections. For tests and benchmarks that need a
 * real server of their own, such as logical decoding of `pg_logical_emit_message`; it takes about a
 * second.
 *
 * Run as root, the server runs as `postgres` (PostgreSQL refuses root). Missing binaries fail with
 * `KEEL_DB_UNAVAILABLE` naming them, never a skip. On failure the server is stopped again; a process
 * that exits without `stop()` stops it on its way out.
 */
export async function startPgServer(options: PgServerOptions = {}): Promise<PgServer> {
  const walLevel = options.walLevel ?? 'logical';
  if (walLevel !== 'replica' && walLevel !== 'logical') {
    throw new InvalidArgumentError('walLevel', "'replica' or 'logical'", walLevel);
  }
  const maxConnections = options.maxConnections ?? 60;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new InvalidArgumentError('maxConnections', 'a positive integer', maxConnections);
  }
  if (options.port !== undefined) checkPort(options.port);
  const settings = Object.entries(options.settings ?? {}).map(([name, value]) => {
    if (!settingName.test(name)) throw new InvalidArgumentError('settings', 'PostgreSQL setting names', name);
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new InvalidArgumentError(`settings.${name}`, 'a finite number or a string', value);
    }
    return `${name} = ${typeof value === 'number' ? String(value) : `'${value.replaceAll("'", "''")}'`}`;
  });
  const fsync = options.fsync ?? false;
  const binDir = resolvePgBinDir(options.binDir);
  requirePgBinaries('the PostgreSQL server', binDir, requiredBinaries);
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const host = await createPgProcessHost({
    what: 'the PostgreSQL server',
    binDir,
    dirPrefix: 'keel-pg-',
    timeoutMs,
  });
  const { dir, stop } = host;
  const dataDir = path.join(dir, 'data');

  try {
    const port = options.port ?? (await freePort());
    await host.initdb(dataDir);
    await appendFile(
      path.join(dataDir, 'postgresql.conf'),
      [
        '',
        "listen_addresses = '127.0.0.1'",
        `port = ${port}`,
        `unix_socket_directories = '${dir}'`,
        `wal_level = ${walLevel}`,
        ...(walLevel === 'logical' ? ['max_replication_slots = 10', 'max_wal_senders = 10'] : []),
        `max_connections = ${maxConnections}`,
        'shared_buffers = 16MB',
        ...(fsync ? ['fsync = on', 'synchronous_commit = on'] : ['fsync = off']),
        ...settings,
        '',
      ].join('\n'),
    );
    if (walLevel === 'logical') {
      // A logical replication connection (pg_recvlogical, START_REPLICATION) is matched by `replication`.
      await appendFile(path.join(dataDir, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 trust\n');
    }
    await host.startServer(dataDir, path.join(dir, 'server.log'), Math.max(1, Math.ceil(timeoutMs / 1000)));
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dir,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    const logs = await logTails(dir, ['server.log']);
    await stop();
    throw new KeelError(
      'KEEL_DB_UNAVAILABLE',
      `the PostgreSQL server did not start: ${(error as Error).message}${logs}`,
      { cause: error },
    );
  }
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new InvalidArgumentError('port', 'a TCP port', port);
  }
}
