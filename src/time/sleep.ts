import { AbortedError } from '../errors/index.ts';
import { systemClock, type Clock } from './clock.ts';

/**
 * Waits `ms` on `clock`. Rejects with `AbortedError` as soon as `signal` aborts, and clears the
 * timer, so a cancelled wait never holds a slot, a listener or the event loop.
 */
export function sleep(ms: number, options: { clock?: Clock; signal?: AbortSignal } = {}): Promise<void> {
  const clock = options.clock ?? systemClock;
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(new AbortedError('sleep', signal.reason));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      reject(new AbortedError('sleep', signal?.reason));
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
