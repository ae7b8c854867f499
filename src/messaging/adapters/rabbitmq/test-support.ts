// Test helpers for suites that run against a real RabbitMQ. Not part of the public door.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect } from 'amqplib';

const run = promisify(execFile);

export const rabbitMqUrl = process.env['KEEL_RABBITMQ_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';

function where(): string {
  const url = new URL(rabbitMqUrl);
  return `RabbitMQ at ${url.hostname}:${url.port || '5672'}`;
}

/** Fails, naming the server, when RabbitMQ cannot be reached: a missing server is never a silent skip. */
export async function requireRabbitMq(): Promise<void> {
  try {
    const connection = await connect(rabbitMqUrl, { timeout: 3000 });
    await connection.close();
  } catch (error) {
    throw new Error(`${where()} is not reachable (${String(error)}); start it or set KEEL_RABBITMQ_URL`, {
      cause: error,
    });
  }
}

/** Deletes queues (whatever they hold); queues that are already gone are fine. */
export async function deleteQueues(names: Iterable<string>): Promise<void> {
  const list = [...new Set(names)];
  if (list.length === 0) return;
  const connection = await connect(rabbitMqUrl);
  try {
    for (const name of list) {
      // A failed delete closes the channel, so each gets its own.
      const channel = await connection.createChannel();
      channel.on('error', () => {});
      await channel.deleteQueue(name).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
  } finally {
    await connection.close();
  }
}

/** Whether `rabbitmqctl` works here (it needs to run on the server's host, usually as root). */
export async function rabbitmqctlWorks(): Promise<boolean> {
  try {
    await run('rabbitmqctl', ['-q', 'status'], { timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Closes, from the server side, every connection whose client-provided name contains `tag`:
 * what a broker restart or a network cut looks like to the client, without disturbing anyone
 * else using the server. Returns how many it closed.
 */
export async function closeConnectionsNamed(tag: string): Promise<number> {
  const { stdout } = await run(
    'rabbitmqctl',
    ['-q', 'list_connections', '--no-table-headers', 'pid', 'client_properties'],
    { timeout: 15_000 },
  );
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(tag))
    .map((line) => /^(<[^>]+>)/.exec(line.trim())?.[1])
    .filter((pid): pid is string => pid !== undefined);
  for (const pid of pids) {
    await run('rabbitmqctl', ['-q', 'close_connection', pid, 'keel test: simulated outage'], {
      timeout: 15_000,
    });
  }
  return pids.length;
}

/** Stops or starts the RabbitMQ application (the Erlang node stays up): a broker outage. */
export async function rabbitMqApp(action: 'stop_app' | 'start_app'): Promise<void> {
  await run('rabbitmqctl', ['-q', action], { timeout: 30_000 });
}
