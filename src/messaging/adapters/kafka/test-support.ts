// Test helpers for suites that run against a real Kafka. Not part of the public door.
import { execFile } from 'node:child_process';
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

/** Stops the project's broker cleanly and starts it again (data survives). */
export async function restartKafka(): Promise<void> {
  await run('bash', [`${scripts}stop.sh`], { timeout: 60_000 });
  await run('bash', [`${scripts}start.sh`], { timeout: 120_000 });
}

/** Deletes topics (whatever they hold); topics already gone are fine. */
export async function deleteTopics(names: Iterable<string>): Promise<void> {
  const topics = [...new Set(names)];
  if (topics.length === 0) return;
  const admin = new Admin({ clientId: 'keel-test-cleanup', bootstrapBrokers: kafkaBrokers });
  try {
    const existing = new Set(await admin.listTopics());
    const gone = topics.filter((t) => existing.has(t));
    if (gone.length > 0) await admin.deleteTopics({ topics: gone });
  } finally {
    await admin.close().catch(() => undefined);
  }
}
