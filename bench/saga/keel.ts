import { openPgDb } from '../../src/db/index.ts';
import { migrate } from '../../src/db/index.ts';
import { defineSaga, SagaRunner, sagaMigrations, startSaga } from '../../src/saga/index.ts';
import type { SagaContender, SagaInstance } from './contender.ts';

export function keelContender(concurrency: number, poolSize: number): SagaContender {
  return {
    system: 'keel',
    how: `SagaRunner, concurrency ${concurrency}, pool of ${poolSize} connections, LISTEN/NOTIFY wake-up; default step policies (retry 3 attempts, 30 s timeout)`,
    async open(url, schema): Promise<SagaInstance> {
      const db = await openPgDb({ url, schema, poolSize, applicationName: 'bench-saga-keel' });
      await migrate(db, sagaMigrations);
      const saga = defineSaga<number>({
        name: 'bench',
        version: 1,
        steps: ['one', 'two', 'three'].map((name) => ({ name, action: async (context) => context.input })),
      });
      const runner = new SagaRunner({ db, sagas: [saga], concurrency, pollMs: 1000 });
      let done = 0;
      const waiters: { at: number; resolve: () => void }[] = [];
      runner.events.on('saga-state', (event) => {
        if (event.to !== 'COMPLETED') return;
        done += 1;
        for (const w of waiters.filter((w) => done >= w.at)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      });
      await runner.start();
      let target = 0;
      return {
        start: async (n) => {
          await startSaga(db, saga, n);
        },
        completed: (count) => {
          target += count;
          const at = target;
          return done >= at ? Promise.resolve() : new Promise((resolve) => waiters.push({ at, resolve }));
        },
        close: async () => {
          await runner.stop();
          await db.close();
        },
      };
    },
  };
}
