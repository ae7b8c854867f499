// A consumer process killed with SIGKILL while handling a message: no close, no release, its
// connections just drop. Another consumer gets the message after the lease, with attempt 2.
// Needs Redis at 127.0.0.1:6379 (fails naming it when unreachable).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { createEnvelope, type Envelope } from '../../src/messaging/envelope.ts';
import {
  redisAddress,
  RedisTestBrokers,
  requireRedis,
} from '../../src/messaging/adapters/redis/redis-test-server.ts';

await requireRedis();

const brokers = new RedisTestBrokers();
afterEach(async () => {
  await brokers.cleanup();
});

const child = fileURLToPath(
  new URL('../../src/messaging/adapters/redis/fixtures/crashing-consumer.ts', import.meta.url),
);

it('a consumer killed with SIGKILL mid-handler: its message goes to another consumer after the lease', async () => {
  const broker = brokers.open();
  const keyPrefix = broker.streamKey('x').replace('{x}', '');
  const message = createEnvelope({ type: 'job.run.v1', payload: { n: 1 } });
  await broker.publish('jobs', [message]);
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', child, keyPrefix, 'jobs', redisAddress.host, String(redisAddress.port)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes(`claimed ${message.id}`)) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`the child exited (${code}) before claiming: ${out}`)));
    });
  } finally {
    proc.kill('SIGKILL');
    await exited;
  }
  const received: { message: Envelope; attempt: number }[] = [];
  const consumer = broker.consumer(
    'jobs',
    async (m, ctx) => void received.push({ message: m, attempt: ctx.attempt }),
    {
      leaseMs: 500,
      pollIntervalMs: 50,
    },
  );
  await consumer.start();
  const deadline = Date.now() + 10_000;
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  await consumer.stop();
  expect(received.map((r) => [r.message.id, r.attempt])).toEqual([[message.id, 2]]);
  expect(await broker.stats('jobs')).toMatchObject({ groups: [{ pending: 0 }] });
}, 30_000);
