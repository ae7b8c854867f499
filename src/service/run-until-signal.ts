import { watchParent, type ParentWatch } from './parent-watch.ts';
import type { Service } from './service.ts';

export interface RunOptions {
  signals?: readonly NodeJS.Signals[];
  /** Drain budget on a signal. Default: 10 000 ms. */
  drainMs?: number;
  /**
   * Also drain and stop when the process's parent exits (looked at every second): for a process
   * started by a wrapper that may die of a signal without passing it on, as `npm start`'s shell
   * does. Off by default: a process meant to outlive its shell (`nohup`) would stop.
   */
  stopWhenParentExits?: boolean;
  /** Called after a clean stop; default exits the process with code 0. */
  onStopped?: () => void;
  log?: (line: string) => void;
}

/**
 * Starts `service` and stops it on SIGTERM or SIGINT: stop taking work, drain, close, exit 0.
 * A second signal while draining exits at once with code 130, for an operator who means it.
 */
export async function runUntilSignal(service: Service, options: RunOptions = {}): Promise<void> {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const onStopped = options.onStopped ?? (() => process.exit(0));
  let stopping = false;
  let parentWatch: ParentWatch | undefined;
  const stop = (reason: string): void => {
    if (stopping) {
      log(`${reason} again: exiting without waiting for the drain`);
      process.exit(130);
    }
    stopping = true;
    parentWatch?.stop();
    log(`${reason}: draining ${service.name} (up to ${options.drainMs ?? 10_000} ms)…`);
    service.stop({ drainMs: options.drainMs }).then(
      () => {
        log(`${service.name} stopped cleanly`);
        onStopped();
      },
      (error: unknown) => {
        log(`${service.name} failed to stop: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, stop);
  await service.start();
  if (options.stopWhenParentExits === true && !stopping)
    parentWatch = watchParent((parent) => stop(`parent process ${parent} exited`));
}
