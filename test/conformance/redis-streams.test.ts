// The broker conformance suite against Redis Streams on a real server at 127.0.0.1:6379 (or
// REDIS_HOST / REDIS_PORT). Unreachable, it fails naming the server, in CI and locally alike.
// Each broker gets its own key prefix and connection name, removed after each test; the restart
// scenario cuts this file's connections (CLIENT KILL ID), never restarts the shared server.
// Run twice: with the default ordering 'none' and with ordering 'per-key'.
import { afterEach } from 'vitest';
import { RedisTestBrokers, requireRedis } from '../../src/messaging/adapters/redis/redis-test-server.ts';
import { describeBrokerConformance } from '../../src/testing/index.ts';

await requireRedis();

const brokers = new RedisTestBrokers();
afterEach(async () => {
  await brokers.cleanup();
});

describeBrokerConformance({
  name: 'redis-streams',
  open: async () => brokers.open(),
  restart: async () => {
    await brokers.cutConnections();
  },
});

// The same adapter with per-key ordering switched on: a different claim path, so the whole suite.
describeBrokerConformance({
  name: 'redis-streams (per-key)',
  open: async () => brokers.open({ ordering: 'per-key' }),
  restart: async () => {
    await brokers.cutConnections();
  },
});
