import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { RabbitMqBroker, RabbitMqStreamBroker } from '../../src/messaging/adapters/rabbitmq/index.ts';
import {
  closeConnectionsNamed,
  deleteQueues,
  rabbitMqUrl,
  rabbitmqctlWorks,
  requireRabbitMq,
} from '../../src/messaging/adapters/rabbitmq/test-support.ts';
import { describeBrokerConformance } from '../../src/testing/index.ts';

// The conformance suite names its destinations itself; the brokers remember what they declared.
const brokers: (RabbitMqBroker | RabbitMqStreamBroker)[] = [];
// Server-side closes pick this run's connections by name, leaving other clients alone.
const tag = `keel-conformance-${randomBytes(4).toString('hex')}`;

beforeAll(requireRabbitMq);
afterAll(async () => {
  await deleteQueues(brokers.flatMap((broker) => broker.declaredQueues()));
});

const canRestart = await rabbitmqctlWorks();

describeBrokerConformance({
  name: 'rabbitmq (quorum queues)',
  open: async () => {
    const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: tag });
    brokers.push(broker);
    return broker;
  },
  // Cuts this run's connections from the server side: the client sees what a broker restart
  // looks like. A full stop_app/start_app runs in test/integration/rabbitmq-broker.test.ts behind an env flag.
  ...restartHook(),
});

function restartHook(): { restart?: () => Promise<void> } {
  return canRestart
    ? {
        restart: async () => {
          // Zero would mean the cut did not happen and the scenario proved nothing.
          if ((await closeConnectionsNamed(tag)) === 0)
            throw new Error(`no connection named ${tag} to close`);
        },
      }
    : {};
}

// The classic path (attempts from the redelivered flag, at-most-once dead-lettering out of the
// delay queues) runs the same scenarios; a shorter stress run keeps the file quick.
describeBrokerConformance({
  name: 'rabbitmq (classic queues)',
  open: async () => {
    const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: tag, queueType: 'classic' });
    brokers.push(broker);
    return broker;
  },
  stressCount: 2000,
  ...restartHook(),
});

// Per-key ordering: every destination is partition queues with a single active consumer, and
// retries wait in the consumer instead of going through delay queues: a different consume and
// retry path, so the whole suite again (a shorter stress run).
describeBrokerConformance({
  name: 'rabbitmq (quorum queues, per-key)',
  open: async () => {
    const broker = new RabbitMqBroker({ url: rabbitMqUrl, name: tag, ordering: 'per-key', partitions: 4 });
    brokers.push(broker);
    return broker;
  },
  stressCount: 2000,
  ...restartHook(),
});

// RabbitMQ streams, the second capability set: replayable, consumer groups (offsets kept in a
// queue per group), no delayed delivery; the shared scenarios that apply.
describeBrokerConformance({
  name: 'rabbitmq streams',
  open: async () => {
    const broker = new RabbitMqStreamBroker({ url: rabbitMqUrl, name: tag, standbyRetryMs: 200 });
    brokers.push(broker);
    return broker;
  },
  stressCount: 2000,
  ...restartHook(),
});
