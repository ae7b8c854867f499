import { migrate, openDb, type Db } from '../../src/db/index.ts';
import { createEnvelope, PgQueue, pgQueueMigrations, type QueueConsumer } from '../../src/messaging/index.ts';
import type { QueueConsumerOptions } from '../../src/messaging/queue-consumer.ts';
import type { Contender, Instance, JobPayload } from './contender.ts';

const queue = 'bench';

export function keelContender(
  variant: 'defaults' | 'tuned',
  options: QueueConsumerOptions,
  how: string,
  name?: string,
): Contender {
  return {
    system: 'keel',
    variant,
    how,
    ...(name === undefined ? {} : { name }),
    async open(schema, url) {
      const db = await openDb({ kind: 'pg', url, schema });
      await migrate(db, pgQueueMigrations);
      return new KeelInstance(db, options);
    },
  };
}

class KeelInstance implements Instance {
  readonly #db: Db;
  readonly #queue: PgQueue;
  readonly #options: QueueConsumerOptions;
  #consumer: QueueConsumer | undefined;

  constructor(db: Db, options: QueueConsumerOptions) {
    this.#db = db;
    this.#queue = new PgQueue(db);
    this.#options = options;
  }

  async enqueueBulk(count: number, chunk: number, payload: () => JobPayload): Promise<void> {
    for (let done = 0; done < count; done += chunk) {
      const n = Math.min(chunk, count - done);
      const batch = Array.from({ length: n }, () =>
        createEnvelope({ type: 'bench.noop.v1', payload: payload() }),
      );
      await this.#queue.publish(queue, batch);
    }
  }

  async enqueueOne(payload: JobPayload): Promise<void> {
    await this.#queue.publish(queue, [createEnvelope({ type: 'bench.noop.v1', payload })]);
  }

  async startWorker(onJob: (payload: JobPayload) => void): Promise<void> {
    this.#consumer = this.#queue.consumer(
      queue,
      async (message) => onJob(message.payload as JobPayload),
      this.#options,
    );
    await this.#consumer.start();
  }

  async remaining(): Promise<number> {
    return this.#queue.depth(queue);
  }

  async close(): Promise<void> {
    await this.#consumer?.stop({ drainMs: 5000 });
    await this.#db.close();
  }
}
