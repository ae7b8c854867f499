// A saga runner in a child process, for the chaos test. It loads, then waits for one line on
// stdin: the JSON list of kill points earlier runners died at (so the test can start the next
// child while the current one runs; EOF instead means "not needed", exit at once). It SIGKILLs
// itself at the first kill point (before an effect, after an effect and before its progress
// commit, after the last commit before the end) not in that list, after printing it with a
// synchronous write; with none left, it runs every instance to its end, prints "done", exits 0.
import { writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { openPgDb } from '../../src/db/index.ts';
import { SagaRunner, listSagas } from '../../src/saga/index.ts';
import { chaosSaga } from './saga-chaos-fixture.ts';

const say = (line: object): void => void writeSync(1, JSON.stringify(line) + '\n');
const input = createInterface({ input: process.stdin });
const first = await new Promise<string | undefined>((resolve) => {
  input.once('line', resolve);
  input.once('close', () => resolve(undefined));
});
if (first === undefined) process.exit(0);
input.close();
const killed = new Set<string>(JSON.parse(first) as string[]);
const owner = `child-${process.pid}`;

const db = await openPgDb({
  url: process.env.DATABASE_URL!,
  schema: process.env.KEEL_CHAOS_SCHEMA!,
  poolSize: 3,
});
const boundary = (id: string): void => {
  if (killed.has(id)) return;
  say({ event: 'boundary', id });
  process.kill(process.pid, 'SIGKILL');
};
const saga = chaosSaga(db, owner, boundary);
const runner = new SagaRunner({ db, sagas: [saga], owner, leaseMs: 400, pollMs: 50, concurrency: 1 });
// After a commit that another effect follows, the stored state is the one the next
// "before-effect" point sees, so only the last commit of each direction is a kill point of its own:
// the last step's (which also completes the instance), and the last compensation's (before the
// write that marks it COMPENSATED).
runner.events.on('step-completed', (e) => {
  if (e.index === saga.steps.length - 1) boundary(`${e.instanceId}:${e.step}:${e.phase}:committed`);
});
runner.events.on('compensation-completed', (e) => {
  if (e.index === 0) boundary(`${e.instanceId}:${e.step}:${e.phase}:committed`);
});
runner.events.on('error', ({ error }) => say({ event: 'error', error: String(error) }));
await runner.start();
say({ event: 'started', owner });
for (;;) {
  const open = [
    ...(await listSagas(db, { state: 'RUNNING' })),
    ...(await listSagas(db, { state: 'COMPENSATING' })),
  ];
  if (open.length === 0) break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
await runner.stop({ drainMs: 1000 });
await db.close();
say({ event: 'done' });
