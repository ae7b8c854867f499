import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { sleep, systemClock } from '../time/index.ts';
import {
  createPgProcessHost,
  freePort,
  logTails,
  requirePgBinaries,
  resolvePgBinDir,
} from './pg-server-process.ts';

export interface ReplicaClusterOptions {
  /**
   * Where initdb, pg_ctl, pg_basebackup and postgres are. Default `KEEL_PG_BIN`, else
   * `/usr/lib/postgresql/15/bin`.
   */
  binDir?: string;
  /** The primary's port. Default: a free port. */
  primaryPort?: number;
  /** The replica's port. Default: a free port. */
  replicaPort?: number;
  /** How long starting both servers and the streaming may take. Default 30 000 ms. */
  startTimeoutMs?: number;
}

/** A primary and a streaming hot-standby replica, each a PostgreSQL server of its own, in a temp directory. */
export interface ReplicaCluster extends AsyncDisposable {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, trust auth. */
  readonly primaryUrl: string;
  readonly replicaUrl: string;
  /** The temp directory holding both data directories and their logs. */
  readonly dir: string;
  /** Stops both servers at once (`pg_ctl stop -m immediate`) and deletes the directory. Idempotent. */
  stop(): Promise<void>;
}

const requiredBinaries = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres'] as const;

/**
 * Starts a PostgreSQL primary (`wal_level=replica`, trust auth for connections and replication on
 * 127.0.0.1) and a replica made with `pg_basebackup -R` that streams from it, and resolves once the
 * replica is in recovery and its WAL receiver is streaming. For tests of replica routing; it takes
 * about two seconds.
 *
 * PostgreSQL refuses to run as root: run as root, every server command goes through
 * `runuser -u postgres` with the directory owned by that user. Missing binaries fail with
 * `KEEL_DB_UNAVAILABLE` naming them, never a skip. On failure everything started is stopped again;
 * a process that exits without `stop()` stops the servers on its way out.
 */
export async function startReplicaCluster(options: ReplicaClusterOptions = {}): Promise<ReplicaCluster> {
  const binDir = resolvePgBinDir(options.binDir);
  requirePgBinaries('the replica cluster', binDir, requiredBinaries);
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const host = await createPgProcessHost({
    what: 'the replica cluster',
    binDir,
    dirPrefix: 'keel-replica-',
    timeoutMs,
  });
  const { dir, run, stop } = host;
  const primaryDir = path.join(dir, 'primary');
  const replicaDir = path.join(dir, 'replica');

  try {
    const primaryPort = options.primaryPort ?? (await freePort());
    const replicaPort = options.replicaPort ?? (await freePort([primaryPort]));
    for (const [field, port] of [
      ['primaryPort', primaryPort],
      ['replicaPort', replicaPort],
    ] as const) {
      if (!Number.isInteger(port) || port <= 0 || port > 65535) {
        throw new InvalidArgumentError(field, 'a TCP port', port);
      }
    }
    await host.initdb(primaryDir);
    await appendFile(
      path.join(primaryDir, 'postgresql.conf'),
      [
        '',
        "listen_addresses = '127.0.0.1'",
        `port = ${primaryPort}`,
        `unix_socket_directories = '${dir}'`,
        'wal_level = replica',
        'max_wal_senders = 4',
        'hot_standby = on',
        'max_connections = 40',
        'shared_buffers = 16MB',
        // Test data needs no crash safety; without fsync the servers start and write faster.
        'fsync = off',
        'wal_receiver_status_interval = 1s',
        '',
      ].join('\n'),
    );
    await appendFile(path.join(primaryDir, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 trust\n');
    await host.startServer(primaryDir, path.join(dir, 'primary.log'));
    await run('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(primaryPort),
      '-U',
      'postgres',
      '-D',
      replicaDir,
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
      '--no-sync',
    ]);
    // The copied configuration names the primary's port; the last setting wins.
    await appendFile(path.join(replicaDir, 'postgresql.conf'), `\nport = ${replicaPort}\n`);
    await host.startServer(replicaDir, path.join(dir, 'replica.log'));
    const replicaUrl = `postgres://postgres@127.0.0.1:${replicaPort}/postgres`;
    await waitForStreaming(replicaUrl, timeoutMs);
    return {
      primaryUrl: `postgres://postgres@127.0.0.1:${primaryPort}/postgres`,
      replicaUrl,
      dir,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    const logs = await logTails(dir, ['primary.log', 'replica.log']);
    await stop();
    throw new KeelError(
      'KEEL_DB_UNAVAILABLE',
      `the replica cluster did not start: ${(error as Error).message}${logs}`,
      {
        cause: error,
      },
    );
  }
}

async function waitForStreaming(url: string, timeoutMs: number): Promise<void> {
  const deadline = systemClock.now() + timeoutMs;
  let last = 'not reached';
  while (systemClock.now() < deadline) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    try {
      await client.connect();
      const { rows } = await client.query<{ recovery: boolean; status: string | null }>(
        'SELECT pg_is_in_recovery() AS recovery, (SELECT status FROM pg_stat_wal_receiver) AS status',
      );
      const row = rows[0];
      if (row?.recovery === true && row.status === 'streaming') return;
      last = `in recovery: ${String(row?.recovery)}, WAL receiver: ${row?.status ?? 'none'}`;
    } catch (error) {
      last = (error as Error).message;
    } finally {
      await client.end().catch(() => undefined);
    }
    await sleep(50);
  }
  throw new Error(`the replica was not streaming within ${timeoutMs} ms (${last})`);
}
