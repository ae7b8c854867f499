// A real stop and start of nats-server under a running consumer. It stops the one server every
// NATS test file shares, so it runs only on request: KEEL_NATS_RESTART=1.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { createEnvelope } from '../../src/messaging/envelope.ts';
import { NatsJetStreamBroker } from '../../src/messaging/adapters/nats/index.ts';
import {
  deleteStreamsWithPrefix,
  natsUrl,
  requireNats,
  testPrefix,
} from '../../src/messaging/adapters/nats/test-support.ts';

const run = promisify(execFile);
const enabled = process.env['KEEL_NATS_RESTART'] === '1';
const prefix = testPrefix();
const daemon = '/usr/sbin/nats-server';
/** How the machine starts it (see the project's server setup): the same arguments, or JetStream's store moves. */
const startArgs = ['--start', '--oknodo', '--background', '--exec', daemon, '--'];
const serverArgs = [
  '-a',
  '127.0.0.1',
  '-p',
  '4222',
  '-js',
  '-sd',
  '/var/lib/nats-server',
  '-l',
  '/var/log/nats-server.log',
];

async function startServer(): Promise<void> {
  await run('start-stop-daemon', [...startArgs, ...serverArgs], { timeout: 15_000 });
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      return await requireNats();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

afterAll(async () => {
  if (enabled) await deleteStreamsWithPrefix(prefix);
}, 30_000);

it('nats-server stopped and started under a running consumer: file-stored messages survive, the consumer goes on', async (context) => {
  if (!enabled) {
    context.skip('set KEEL_NATS_RESTART=1 to run: it stops the nats-server every NATS test file shares');
    return;
  }
  await requireNats();
  const broker = new NatsJetStreamBroker({ servers: natsUrl, prefix, pullExpiresMs: 1000 });
  const destination = `restart_${randomBytes(4).toString('hex')}`;
  const seen = new Set<string>();
  let block = true;
  const consumer = broker.consumer(
    destination,
    async (message) => {
      // Holds the first messages unacknowledged across the outage: they must come back.
      while (block) await new Promise((resolve) => setTimeout(resolve, 20));
      seen.add(message.id);
    },
    { pollIntervalMs: 100, concurrency: 4 },
  );
  const batch = (n: number) =>
    Array.from({ length: n }, (_, i) => createEnvelope({ type: 'restart.tested.v1', payload: { i } }));
  const before = batch(20);
  const after = batch(20);
  try {
    await consumer.start();
    await broker.publish(destination, before);
    await run('start-stop-daemon', ['--stop', '--oknodo', '--retry', '10', '--exec', daemon], {
      timeout: 20_000,
    });
    block = false;
    await startServer();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await broker.publish(destination, after);
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    const until = Date.now() + 60_000;
    while (seen.size < 40 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen).toEqual(new Set([...before, ...after].map((m) => m.id)));
  } finally {
    // Whatever happened, the shared server is left running.
    await startServer();
    await consumer.stop({ drainMs: 500 });
    await broker.close();
  }
}, 120_000);
