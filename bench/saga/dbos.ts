import { DBOS } from '@dbos-inc/dbos-sdk';
import type { SagaContender, SagaInstance } from './contender.ts';

// DBOS is one executor per process: registered once, launched once per run.
const one = DBOS.registerStep(async (n: number) => n, { name: 'one' });
const two = DBOS.registerStep(async (n: number) => n, { name: 'two' });
const three = DBOS.registerStep(async (n: number) => n, { name: 'three' });
const workflow = DBOS.registerWorkflow(
  async (n: number) => {
    await one(n);
    await two(n);
    await three(n);
    return n;
  },
  { name: 'bench' },
);

export function dbosContender(poolSize: number): SagaContender {
  return {
    system: 'dbos',
    how: `DBOS Transact 5.3.0 (exact-pinned): DBOS.startWorkflow of a registered workflow of three registered steps (one checkpoint each), system database pool of ${poolSize} connections, admin server off`,
    async open(url, schema): Promise<SagaInstance> {
      DBOS.setConfig({
        name: 'bench-saga',
        systemDatabaseUrl: url,
        systemDatabaseSchemaName: schema,
        systemDatabasePoolSize: poolSize,
        runAdminServer: false,
        logLevel: 'error',
      });
      await DBOS.launch();
      let pending: Promise<unknown>[] = [];
      return {
        start: async (n) => {
          const handle = await DBOS.startWorkflow(workflow)(n);
          pending.push(handle.getResult());
        },
        completed: async () => {
          const batch = pending;
          pending = [];
          await Promise.all(batch);
        },
        close: () => DBOS.shutdown(),
      };
    },
  };
}
