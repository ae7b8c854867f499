import { InvalidArgumentError } from '../errors/index.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';

export interface ParentWatchOptions {
  /** How often to look. Default: 1 000 ms. */
  everyMs?: number;
  clock?: Clock;
  /** The process's parent now; default `process.ppid`, which Node reads afresh on each call. */
  parentPid?: () => number;
}

export interface ParentWatch {
  /** The parent the watch started with. */
  readonly parent: number;
  stop(): void;
}

/**
 * Calls `onGone` once when the process's parent is no longer the one it started under: the
 * parent exited and the process was adopted (by init or a subreaper). A signal sent to a
 * wrapper that does not pass it on (`npm start` runs its script in `sh -c`; dash neither
 * forwards a SIGTERM nor execs the command) otherwise leaves the process running on its own,
 * with nobody left to stop it. Node has no parent-death signal, so this polls.
 */
export function watchParent(onGone: (parent: number) => void, options: ParentWatchOptions = {}): ParentWatch {
  const everyMs = options.everyMs ?? 1_000;
  if (!Number.isInteger(everyMs) || everyMs < 1)
    throw new InvalidArgumentError('everyMs', 'a positive integer of milliseconds', everyMs);
  const clock = options.clock ?? systemClock;
  const parentPid = options.parentPid ?? (() => process.ppid);
  const parent = parentPid();
  let timer: TimerHandle | undefined;
  const look = (): void => {
    if (parentPid() === parent) {
      timer = clock.setTimeout(look, everyMs);
      return;
    }
    timer = undefined;
    onGone(parent);
  };
  timer = clock.setTimeout(look, everyMs);
  return {
    parent,
    stop: () => {
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    },
  };
}
