import { AbortedError } from '../errors/index.ts';
import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import type { PolicyContext } from './context.ts';
import { BulkheadRejectedError, TimeoutError } from './errors.ts';
import { requireInteger, requireObject } from './options.ts';
import { Policy, runPolicy, type Next, type Operation } from './policy.ts';

export interface BulkheadOptions {
  /** Calls running at once. Required. */
  maxConcurrent: number;
  /** Calls waiting for a slot, first in first out; beyond it calls are rejected. Default 0. */
  maxQueue?: number;
}

export interface BulkheadEvents {
  rejected: { running: number; queued: number };
}

/** A queued call: resolved with the slot, or taken out when its signal aborts. */
class Waiter {
  resolve!: () => void;
  reject!: (error: unknown) => void;
  signal: AbortSignal | undefined = undefined;
  /** Neighbours in the queue: leaving a list is O(1); a queue that never empties holds only its waiters. */
  prev: Waiter | undefined = undefined;
  next: Waiter | undefined = undefined;
  constructor(readonly bulkhead: BulkheadPolicy) {}
  handleEvent(): void {
    this.bulkhead.leaveQueue(this);
    this.reject(new AbortedError('waiting for a bulkhead slot', this.signal?.reason));
  }
}

/**
 * Limits concurrency so one slow dependency cannot take every connection or socket. A slot is
 * freed when the work has stopped, not when the caller stopped waiting: an aggressive timeout
 * outside or inside the bulkhead does not free the slot while its work still runs.
 */
export class BulkheadPolicy extends Policy {
  readonly events = new TypedEvents<BulkheadEvents>();
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  #running = 0;
  #head: Waiter | undefined = undefined;
  #tail: Waiter | undefined = undefined;
  #queued = 0;

  constructor(options: BulkheadOptions) {
    super();
    requireObject('options', options);
    this.maxConcurrent = requireInteger('maxConcurrent', options.maxConcurrent, 1);
    this.maxQueue = requireInteger('maxQueue', options.maxQueue ?? 0, 0, true);
  }

  on<K extends keyof BulkheadEvents>(name: K, listener: Listener<BulkheadEvents[K]>): ListenerHandle {
    return this.events.on(name, listener);
  }

  /** Calls holding a slot (running, or still running after their caller timed out). */
  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queued;
  }

  async [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    if (this.#running >= this.maxConcurrent) await this.#enqueue(context);
    else this.#running++;
    let holdUntil: Promise<void> | undefined;
    try {
      return await next.call(fn, context);
    } catch (error) {
      if (error instanceof TimeoutError && error.settled !== undefined) holdUntil = error.settled;
      throw error;
    } finally {
      if (holdUntil === undefined) this.#release();
      else void holdUntil.then(() => this.#release());
    }
  }

  #enqueue(context: PolicyContext): Promise<void> {
    if (this.queued >= this.maxQueue) {
      if (this.events.has('rejected'))
        this.events.emit('rejected', { running: this.#running, queued: this.queued });
      return Promise.reject(new BulkheadRejectedError(this.maxConcurrent, this.maxQueue));
    }
    const waiter = new Waiter(this);
    const signal = context.abortSignal();
    const promise = new Promise<void>((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
    });
    if (signal !== undefined) {
      waiter.signal = signal;
      signal.addEventListener('abort', waiter, { once: true });
    }
    waiter.prev = this.#tail;
    if (this.#tail === undefined) this.#head = waiter;
    else this.#tail.next = waiter;
    this.#tail = waiter;
    this.#queued++;
    return promise;
  }

  /** Hands the slot to the next waiter, or frees it. */
  #release(): void {
    const waiter = this.#shift();
    if (waiter === undefined) {
      this.#running--;
      return;
    }
    waiter.signal?.removeEventListener('abort', waiter);
    waiter.resolve();
  }

  #shift(): Waiter | undefined {
    const waiter = this.#head;
    if (waiter !== undefined) this.leaveQueue(waiter);
    return waiter;
  }

  /** @internal An aborted waiter leaves the queue. */
  leaveQueue(waiter: Waiter): void {
    if (waiter.prev === undefined && this.#head !== waiter) return; // already out
    if (waiter.prev === undefined) this.#head = waiter.next;
    else waiter.prev.next = waiter.next;
    if (waiter.next === undefined) this.#tail = waiter.prev;
    else waiter.next.prev = waiter.prev;
    waiter.prev = waiter.next = undefined;
    this.#queued--;
  }
}

export function bulkhead(options: BulkheadOptions): BulkheadPolicy {
  return new BulkheadPolicy(options);
}
