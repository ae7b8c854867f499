import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import { AbortedError } from '../errors/index.ts';
import { OwnedContext, type PolicyContext } from './context.ts';
import { requireInteger, requireNumber, requireObject } from './options.ts';
import { Policy, runPolicy, type Next, type Operation } from './policy.ts';

export interface HedgeOptions {
  /** How long the first attempt runs alone before a hedge starts, in ms. Required. */
  delayMs: number;
  /** Extra attempts at most, one every `delayMs`. Default 1. */
  maxHedges?: number;
  /** Start the next attempt at once when one fails (rather than waiting its delay). Default true. */
  hedgeOnFailure?: boolean;
  clock?: Clock;
}

export interface HedgeEvents {
  /** A hedged attempt started; `attempt` is 2 for the first hedge. */
  hedge: { attempt: number };
}

const lostRace = new AbortedError('hedged attempt', 'another attempt won');

/**
 * Tail-latency insurance for idempotent reads: if the first attempt is slow, start another;
 * the first success wins and every other attempt is aborted through its signal. When all
 * attempts fail, the last failure is thrown.
 */
export class HedgePolicy extends Policy {
  readonly events = new TypedEvents<HedgeEvents>();
  readonly delayMs: number;
  readonly maxHedges: number;
  readonly #hedgeOnFailure: boolean;
  readonly #clock: Clock;

  constructor(options: HedgeOptions) {
    super();
    requireObject('options', options);
    this.delayMs = requireNumber('delayMs', options.delayMs, 0);
    this.maxHedges = requireInteger('maxHedges', options.maxHedges ?? 1, 0);
    this.#hedgeOnFailure = options.hedgeOnFailure ?? true;
    this.#clock = options.clock ?? systemClock;
  }

  on<K extends keyof HedgeEvents>(name: K, listener: Listener<HedgeEvents[K]>): ListenerHandle {
    return this.events.on(name, listener);
  }

  [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const attempts: OwnedContext[] = [];
      let running = 0;
      let settled = false;
      let timer: TimerHandle | undefined;

      const finish = (winner?: OwnedContext): void => {
        settled = true;
        if (timer !== undefined) this.#clock.clearTimeout(timer);
        for (const attempt of attempts) {
          if (attempt !== winner) attempt.abort(lostRace);
          attempt.release();
        }
      };
      const start = (): void => {
        timer = undefined;
        if (settled) return;
        // A caller who left gets no new attempt: the work may not check its signal before
        // its first side effect. With none running, nothing else is left to answer.
        if (context.aborted) {
          if (running === 0) {
            finish();
            reject(new AbortedError('hedged call', context.reason));
          }
          return;
        }
        const number = attempts.length + 1;
        const attemptContext = new OwnedContext(context, number);
        attempts.push(attemptContext);
        running++;
        if (number > 1 && this.events.has('hedge')) this.events.emit('hedge', { attempt: number });
        if (number <= this.maxHedges) timer = this.#clock.setTimeout(start, this.delayMs);
        let work: Promise<T>;
        try {
          work = Promise.resolve(next.call(fn, attemptContext));
        } catch (error) {
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- rethrow what fn threw, unchanged
          work = Promise.reject(error);
        }
        work.then(
          (value) => {
            running--;
            if (settled) return;
            finish(attemptContext);
            resolve(value);
          },
          (error: unknown) => {
            running--;
            if (settled) return;
            const more = attempts.length <= this.maxHedges && !context.aborted;
            if (more && this.#hedgeOnFailure) {
              if (timer !== undefined) this.#clock.clearTimeout(timer);
              start();
            } else if (running === 0 && (timer === undefined || context.aborted)) {
              // Nothing is running and no hedge is due: this failure is the answer.
              finish();
              // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the attempt's own error, unchanged
              reject(error);
            }
          },
        );
      };
      start();
    });
  }
}

export function hedge(options: HedgeOptions): HedgePolicy {
  return new HedgePolicy(options);
}
