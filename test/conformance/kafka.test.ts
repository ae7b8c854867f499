import { afterAll, beforeAll, vi } from 'vitest';
import { KafkaBroker } from '../../src/messaging/adapters/kafka/index.ts';
import {
  deleteTopics,
  kafkaBrokers,
  ownKafka,
  requireKafka,
  restartKafka,
} from '../../src/messaging/adapters/kafka/test-support.ts';
import { describeBrokerConformance } from '../../src/testing/index.ts';

// The restart scenario waits for other test files using Kafka to finish, then restarts it
// (10-22 s here): more than the default 30 s per test in the worst case.
vi.setConfig({ testTimeout: 120_000 });

// The suite names its topics itself; the brokers remember which they created.
const brokers: KafkaBroker[] = [];

beforeAll(() => requireKafka(), 15_000);
afterAll(() => deleteTopics(brokers.flatMap((broker) => broker.ensuredTopics())), 30_000);

describeBrokerConformance({
  name: 'kafka',
  open: async () => {
    const broker = new KafkaBroker({ brokers: kafkaBrokers, partitions: 3 });
    brokers.push(broker);
    return broker;
  },
  // The group session timeout: long enough that a loaded machine does not drop a live member.
  // The crash scenario's consumer leaves the group as it closes, so nothing waits for it.
  leaseMs: 6000,
  waitMs: 30_000,
  // Only the project's own broker may be stopped: another Kafka belongs to someone else.
  ...(ownKafka ? { restart: restartKafka } : {}),
});
