import { Logger, makeWorkerUtils, run, runMigrations, type Runner, type WorkerUtils } from 'graphile-worker';
import type { Contender, Instance, JobPayload } from './contender.ts';

const task = 'bench_noop';
const quiet = new Logger(() => () => undefined);

/** `preset.worker` options; `{}` is graphile-worker's defaults (concurrency 1, poll 2 s, no batching). */
export type GraphileSetup = GraphileConfig.WorkerOptions;

export function graphileContender(
  variant: 'defaults' | 'tuned',
  setup: GraphileSetup,
  how: string,
): Contender {
  return {
    system: 'graphile-worker',
    variant,
    how,
    async open(schema, url) {
      await runMigrations({ connectionString: url, schema, logger: quiet });
      const utils = await makeWorkerUtils({ connectionString: url, schema, logger: quiet });
      return new GraphileInstance(utils, schema, url, setup);
    },
  };
}

class GraphileInstance implements Instance {
  readonly #utils: WorkerUtils;
  readonly #schema: string;
  readonly #url: string;
  readonly #setup: GraphileSetup;
  #runner: Runner | undefined;

  constructor(utils: WorkerUtils, schema: string, url: string, setup: GraphileSetup) {
    this.#utils = utils;
    this.#schema = schema;
    this.#url = url;
    this.#setup = setup;
  }

  async enqueueBulk(count: number, chunk: number, payload: () => JobPayload): Promise<void> {
    for (let done = 0; done < count; done += chunk) {
      const n = Math.min(chunk, count - done);
      await this.#utils.addJobs(Array.from({ length: n }, () => ({ identifier: task, payload: payload() })));
    }
  }

  async enqueueOne(payload: JobPayload): Promise<void> {
    await this.#utils.addJob(task, payload);
  }

  async startWorker(onJob: (payload: JobPayload) => void): Promise<void> {
    this.#runner = await run({
      noHandleSignals: true,
      logger: quiet,
      taskList: { [task]: async (payload) => onJob(payload as JobPayload) },
      preset: { worker: { ...this.#setup, connectionString: this.#url, schema: this.#schema } },
    });
  }

  async remaining(): Promise<number> {
    // Completed jobs are deleted: every row left is queued, locked or failed.
    return this.#utils.withPgClient(async (client) => {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${this.#schema}._private_jobs`,
      );
      return rows[0]?.n ?? 0;
    });
  }

  async close(): Promise<void> {
    await this.#runner?.stop();
    await this.#utils.release();
  }
}
