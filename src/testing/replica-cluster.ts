import { execFile, execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { sleep, systemClock } from '../time/index.ts';

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
  const binDir = options.binDir ?? (process.env.KEEL_PG_BIN?.trim() || '/usr/lib/postgresql/15/bin');
  const missing = requiredBinaries.filter((name) => !existsSync(path.join(binDir, name)));
  if (missing.length > 0) {
    throw new KeelError(
      'KEEL_DB_UNAVAILABLE',
      `the replica cluster needs PostgreSQL's server binaries ${requiredBinaries.join(', ')} in ${binDir}; missing: ${missing.join(', ')}. Install PostgreSQL 15 (Debian: postgresql-15) or set KEEL_PG_BIN to their directory`,
      { details: { binDir, missing } },
    );
  }
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : undefined;
  const dir = await mkdtemp(path.join(tmpdir(), 'keel-replica-'));
  if (owner !== undefined) await chown(dir, owner.uid, owner.gid);
  const primaryDir = path.join(dir, 'primary');
  const replicaDir = path.join(dir, 'replica');
  const run = (binary: string, args: string[]): Promise<string> =>
    asRoot
      ? runCommand(
          binary,
          'runuser',
          ['-u', 'postgres', '--', path.join(binDir, binary), ...args],
          dir,
          timeoutMs,
        )
      : runCommand(binary, path.join(binDir, binary), args, dir, timeoutMs);
  const started: string[] = [];
  const stopSync = (): void => {
    for (const dataDir of started.toReversed()) {
      try {
        execFileSync(
          asRoot ? 'runuser' : path.join(binDir, 'pg_ctl'),
          [
            ...(asRoot ? ['-u', 'postgres', '--', path.join(binDir, 'pg_ctl')] : []),
            '-D',
            dataDir,
            'stop',
            '-m',
            'immediate',
          ],
          { stdio: 'ignore', cwd: dir, timeout: 10_000 },
        );
      } catch {
        // Already stopped.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopSync);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const dataDir of started.toReversed()) {
        await run('pg_ctl', ['-D', dataDir, 'stop', '-m', 'immediate']).catch(() => undefined);
      }
      started.length = 0;
      process.off('exit', stopSync);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

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
    await run('initdb', [
      '-D',
      primaryDir,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
      '--no-instructions',
    ]);
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
    started.push(primaryDir);
    await run('pg_ctl', ['-D', primaryDir, '-l', path.join(dir, 'primary.log'), '-w', '-t', '30', 'start']);
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
    started.push(replicaDir);
    await run('pg_ctl', ['-D', replicaDir, '-l', path.join(dir, 'replica.log'), '-w', '-t', '30', 'start']);
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
    const logs = await logTails(dir);
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

function postgresUser(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch (error) {
    throw new KeelError(
      'KEEL_DB_UNAVAILABLE',
      'the replica cluster runs as root, and PostgreSQL refuses root: it needs a `postgres` user to run the servers as (the postgresql package creates it)',
      { cause: error },
    );
  }
}

function runCommand(
  name: string,
  file: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else reject(new Error(`${name} failed: ${stderr.trim() || error.message}`, { cause: error }));
    });
  });
}

async function freePort(exclude: number[] = []): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
      });
    });
    if (port > 0 && !exclude.includes(port)) return port;
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

async function logTails(dir: string): Promise<string> {
  let text = '';
  for (const name of ['primary.log', 'replica.log']) {
    const log = await readFile(path.join(dir, name), 'utf8').catch(() => undefined);
    if (log !== undefined)
      text += `\n--- ${name} (last lines)\n${log.trim().split('\n').slice(-10).join('\n')}`;
  }
  return text;
}
