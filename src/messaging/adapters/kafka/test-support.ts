// Test helpers for suites that run against a real Kafka. Not part of the public door.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Admin } from '@platformatic/kafka';

const run = promisify(execFile);
const scripts = fileURLToPath(new URL('../../../../scripts/kafka/', import.meta.url));

/** The Kafka the tests use: `KEEL_KAFKA_BROKERS`, else the one `scripts/kafka/start.sh` runs. */
export const kafkaBrokers: string[] = (process.env['KEEL_KAFKA_BROKERS'] ?? '127.0.0.1:9092')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');

/** Whether the tests run against the project's own broker, which they may stop and start. */
export const ownKafka = process.env['KEEL_KAFKA_BROKERS'] === undefined;

/** Fails, naming the server and how to start it, when Kafka cannot be reached: never a silent skip. */
export async function requireKafka(brokers: string[] = kafkaBrokers): Promise<void> {
  const admin = new Admin({
    clientId: 'keel-test-probe',
    bootstrapBrokers: brokers,
    connectTimeout: 3000,
    timeout: 3000,
    retries: 0,
  });
  try {
    await admin.metadata({ topics: [] });
  } catch (error) {
    const where = `Kafka at ${brokers.join(',')}`;
    const hint =
      process.env['CI'] === 'true'
        ? 'CI must start it before the tests (bash scripts/kafka/start.sh)'
        : 'start it with `bash scripts/kafka/start.sh`, or point KEEL_KAFKA_BROKERS at another Kafka';
    throw new Error(`${where} is not reachable (${String(error)}); ${hint}`, { cause: error });
  } finally {
    await admin.close().catch(() => undefined);
  }
}

// Test files run in parallel. A file that restarts the broker must not do it under another
// file's feet: users leave a marker for as long as they run, a restart waits until there are
// none (each side sets its own flag, then checks the other's, so one of them always backs off).
const home = process.env['KEEL_KAFKA_HOME'] ?? fileURLToPath(new URL('../../../../.kafka/', import.meta.url));
const usersDir = join(home, 'test-users');
const restartingDir = join(home, 'test-restarting');

/**
 * Marks the calling test file as using the project's Kafka until the returned function is
 * called; `restartKafka` from another file waits meanwhile. A no-op for another Kafka.
 */
export async function useKafka(): Promise<() => Promise<void>> {
  if (!ownKafka) return async () => undefined;
  await mkdir(usersDir, { recursive: true });
  const marker = join(usersDir, `${process.pid}-${randomBytes(4).toString('hex')}`);
  for (;;) {
    await waitWhile(restarting, 'another test file restarting Kafka');
    await writeFile(marker, '');
    if (!(await restarting())) break;
    await rm(marker, { force: true });
  }
  return () => rm(marker, { force: true });
}

/** Stops the project's broker cleanly and starts it again (data survives), once no other test file uses it. */
export async function restartKafka(): Promise<void> {
  await mkdir(usersDir, { recursive: true });
  for (;;) {
    await waitWhile(otherUsers, 'other test files using Kafka');
    try {
      await mkdir(restartingDir);
    } catch {
      await pause(200);
      continue;
    }
    if (!(await otherUsers())) break;
    await rm(restartingDir, { recursive: true, force: true });
  }
  try {
    await run('bash', [`${scripts}stop.sh`], { timeout: 60_000 });
    await run('bash', [`${scripts}start.sh`], { timeout: 120_000 });
  } finally {
    await rm(restartingDir, { recursive: true, force: true });
  }
}

async function restarting(): Promise<boolean> {
  try {
    // A run killed mid-restart leaves the flag behind; a restart never takes this long.
    if (Date.now() - (await stat(restartingDir)).mtimeMs > 180_000) {
      await rm(restartingDir, { recursive: true, force: true });
      return false;
    }
    return true;
  } catch {
    return false;
  }
}

async function otherUsers(): Promise<boolean> {
  for (const name of await readdir(usersDir)) {
    const pid = Number(name.split('-')[0]);
    if (pid === process.pid) continue;
    if (alive(pid)) return true;
    await rm(join(usersDir, name), { force: true }); // left by a killed run
  }
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitWhile(condition: () => Promise<boolean>, what: string, ms = 150_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (await condition()) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await pause(200);
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Deletes topics (whatever they hold); topics already gone are fine. */
export async function deleteTopics(names: Iterable<string>): Promise<void> {
  const topics = new Set(names);
  if (topics.size > 0) await deleteTopicsNamed((topic) => topics.has(topic));
}

/** Deletes every topic whose name `matches` (whatever they hold). */
export async function deleteTopicsNamed(matches: (topic: string) => boolean): Promise<void> {
  const admin = new Admin({ clientId: 'keel-test-cleanup', bootstrapBrokers: kafkaBrokers });
  try {
    const gone = (await admin.listTopics()).filter(matches);
    if (gone.length > 0) await admin.deleteTopics({ topics: gone });
  } finally {
    await admin.close().catch(() => undefined);
  }
}
