// Where the orders bench's client runs: in the bench's process (the default, the method of the
// line of record) or in a child process (BENCH_CLIENT=process). On a two-core machine the
// client's CPU then lands on the server's thread or beside it, which moves the ratio: both are
// offered so the two can be compared in one run of each.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { postOrders, type LoadRequest, type LoadResult } from './closed-loop.ts';

export interface LoadClient {
  readonly where: 'in-process' | 'process';
  run(request: LoadRequest): Promise<LoadResult>;
  close(): Promise<void>;
}

export function inProcessClient(): LoadClient {
  return { where: 'in-process', run: postOrders, close: async () => undefined };
}

export function childProcessClient(): LoadClient {
  const child: ChildProcess = fork(fileURLToPath(new URL('./client-process.ts', import.meta.url)), {
    execArgv: ['--import', 'tsx'],
  });
  // One round at a time: the bench awaits each before it sends the next.
  const run = (request: LoadRequest): Promise<LoadResult> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`the client process exited (${code})`));
      child.once('exit', onExit);
      child.once('message', (answer: { result?: LoadResult; error?: string }) => {
        child.off('exit', onExit);
        if (answer.result !== undefined) resolve(answer.result);
        else reject(new Error(`the client process failed: ${answer.error}`));
      });
      child.send(request);
    });
  const close = async (): Promise<void> => {
    if (child.exitCode !== null || !child.connected) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.disconnect();
    await exited;
  };
  return { where: 'process', run, close };
}
