// Process plumbing shared by the throwaway PostgreSQL starters (startPgServer, startReplicaCluster):
// finding the binaries, running them as `postgres` when we are root, a temp directory, initdb, and
// stopping every server started — on stop() and, failing that, on process exit.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KeelError } from '../errors/index.ts';

/** `binDir` if given, else `KEEL_PG_BIN`, else the Debian PostgreSQL 15 directory. */
export function resolvePgBinDir(binDir: string | undefined): string {
  return binDir ?? (process.env.KEEL_PG_BIN?.trim() || '/usr/lib/postgresql/15/bin');
}

/** Fails with `KEEL_DB_UNAVAILABLE` naming every binary of `required` missing from `binDir`. */
export function requirePgBinaries(what: string, binDir: string, required: readonly string[]): void {
  const missing = required.filter((name) => !existsSync(path.join(binDir, name)));
  if (missing.length > 0) {
    throw new KeelError(
      'KEEL_DB_UNAVAILABLE',
      `${what} needs PostgreSQL's server binaries ${required.join(', ')} in ${binDir}; missing: ${missing.join(', ')}. Install PostgreSQL 15 (Debian: postgresql-15) or set KEEL_PG_BIN to their directory`,
      { details: { binDir, missing } },
    );
  }
}

export interface PgProcessHostOptions {
  /** Names the starter in error messages, e.g. `the replica cluster`. */
  what: string;
  binDir: string;
  /** Prefix of the temp directory's name, e.g. `keel-replica-`. */
  dirPrefix: string;
  /** Upper bound on each command run. */
  timeoutMs: number;
}

/** A temp directory owned by the user the servers run as, and the servers started in it. */
export interface PgProcessHost {
  readonly dir: string;
  /** Runs `binDir/<binary>` in `dir`, through `runuser -u postgres` when root; resolves its stdout. */
  readonly run: (binary: string, args: string[]) => Promise<string>;
  /** `initdb` with user `postgres`, trust auth, UTF8, the C locale, and no sync. */
  readonly initdb: (dataDir: string) => Promise<void>;
  /** `pg_ctl start -w`; from here on stop() and process exit stop this server. */
  readonly startServer: (dataDir: string, logFile: string, waitSeconds?: number) => Promise<void>;
  /** Stops every started server (`pg_ctl stop -m immediate`, last first) and deletes `dir`. Idempotent. */
  readonly stop: () => Promise<void>;
}

/**
 * Makes the temp directory and the stop-on-exit hook. PostgreSQL refuses to run as root: as root,
 * every command goes through `runuser -u postgres` and the directory is owned by that user.
 */
export async function createPgProcessHost(options: PgProcessHostOptions): Promise<PgProcessHost> {
  const { binDir, timeoutMs } = options;
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser(options.what) : undefined;
  const dir = await mkdtemp(path.join(tmpdir(), options.dirPrefix));
  if (owner !== undefined) await chown(dir, owner.uid, owner.gid);
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
  return {
    dir,
    run,
    initdb: async (dataDir) => {
      await run('initdb', [
        '-D',
        dataDir,
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
    },
    startServer: async (dataDir, logFile, waitSeconds = 30) => {
      // Tracked before starting: a start that times out may still leave a server running.
      started.push(dataDir);
      await run('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', String(waitSeconds), 'start']);
    },
    stop: () => {
      stopped ??= (async () => {
        for (const dataDir of started.toReversed()) {
          await run('pg_ctl', ['-D', dataDir, 'stop', '-m', 'immediate']).catch(() => undefined);
        }
        started.length = 0;
        process.off('exit', stopSync);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

function postgresUser(what: string): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch (error) {
    throw new KeelError(
      'KEEL_DB_UNAVAILABLE',
      `${what} runs as root, and PostgreSQL refuses root: it needs a \`postgres\` user to run the servers as (the postgresql package creates it)`,
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

/** A TCP port on 127.0.0.1 that was free a moment ago, other than those in `exclude`. */
export async function freePort(exclude: number[] = []): Promise<number> {
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

/** The last ten lines of each log in `dir` that exists, for an error message. */
export async function logTails(dir: string, names: readonly string[]): Promise<string> {
  let text = '';
  for (const name of names) {
    const log = await readFile(path.join(dir, name), 'utf8').catch(() => undefined);
    if (log !== undefined)
      text += `\n--- ${name} (last lines)\n${log.trim().split('\n').slice(-10).join('\n')}`;
  }
  return text;
}
