import PgBoss from 'pg-boss';
import type { Contender, Instance, JobPayload } from './contender.ts';

const queue = 'bench';

export interface PgBossSetup {
  /** Calls to `work()`: each adds one polling worker (v10 has no per-worker concurrency). */
  workers: number;
  /** `work()` options; `{}` is pg-boss's defaults (batchSize 1, polling every 2 s). */
  work: PgBoss.WorkOptions;
}

export function pgBossContender(variant: 'defaults' | 'tuned', setup: PgBossSetup, how: string): Contender {
  return {
    system: 'pg-boss',
    variant,
    how,
    async open(schema, url) {
      // Pool size: pg-boss's default (10) in both variants.
      const boss = new PgBoss({ connectionString: url, schema });
      boss.on('error', (error) => console.error('pg-boss:', error));
      await boss.start();
      await boss.createQueue(queue);
      return new PgBossInstance(boss, schema, setup);
    },
  };
}

class PgBossInstance implements Instance {
  readonly #boss: PgBoss;
  readonly #schema: string;
  readonly #setup: PgBossSetup;

  constructor(boss: PgBoss, schema: string, setup: PgBossSetup) {
    this.#boss = boss;
    this.#schema = schema;
    this.#setup = setup;
  }

  async enqueueBulk(count: number, chunk: number, payload: () => JobPayload): Promise<void> {
    for (let done = 0; done < count; done += chunk) {
      const n = Math.min(chunk, count - done);
      await this.#boss.insert(Array.from({ length: n }, () => ({ name: queue, data: payload() })));
    }
  }

  async enqueueOne(payload: JobPayload): Promise<void> {
    await this.#boss.send(queue, payload);
  }

  async startWorker(onJob: (payload: JobPayload) => void): Promise<void> {
    for (let i = 0; i < this.#setup.workers; i++) {
      await this.#boss.work<JobPayload>(queue, this.#setup.work, async (jobs) => {
        for (const job of jobs) onJob(job.data);
      });
    }
  }

  async remaining(): Promise<number> {
    // Completed jobs stay in the table (archived later): count only those not yet completed.
    const result = await this.#boss
      .getDb()
      .executeSql(
        `SELECT count(*)::int AS n FROM ${this.#schema}.job WHERE name = $1 AND state < 'completed'`,
        [queue],
      );
    const rows = result.rows as { n: number }[];
    return rows[0]?.n ?? 0;
  }

  async close(): Promise<void> {
    await this.#boss.stop({ graceful: false, wait: true, timeout: 5000 });
  }
}
