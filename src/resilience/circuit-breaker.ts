import { InvalidArgumentError } from '../errors/index.ts';
import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import { systemClock, type Clock } from '../time/index.ts';
import type { BreakerStateStore, StoredBreakerState } from './breaker-state-store.ts';
import { isCircuitState, type CircuitState, type OpenReason } from './circuit-state.ts';
import type { PolicyContext } from './context.ts';
import { BrokenCircuitError, IsolatedCircuitError } from './errors.ts';
import {
  createDetector,
  type FailureDetector,
  type FailureThreshold,
  type WindowStats,
} from './failure-window.ts';
import { requireFunction, requireInteger, requireNumber, requireObject } from './options.ts';
import { Policy, runPolicy, start, type Next, type Operation } from './policy.ts';

export interface SharedBreakerOptions {
  store: BreakerStateStore;
  /** The breaker's name in the store: every process guarding the same dependency uses the same key. */
  key: string;
  /** How often, at most, the breaker reads the store (in the background, on a call). Default 1000. */
  syncMs?: number;
}

export interface CircuitBreakerOptions {
  /** When a closed breaker opens. Default `{ kind: 'consecutive', failures: 5 }`. */
  threshold?: FailureThreshold;
  /** How long an open breaker fails calls fast before it lets probes through, in ms. Default 10 000. */
  openMs?: number;
  /**
   * Calls let through as probes when half-open; all must succeed to close, one failure
   * re-opens. Other calls fail fast meanwhile rather than wait. Default 1.
   */
  halfOpenProbes?: number;
  /** Which errors count as failures. Default: all, except when the caller's own signal aborted. */
  handle?: (error: unknown) => boolean;
  /** Which results count as failures. Default: none. */
  handleResult?: (result: unknown) => boolean;
  /** Start from a saved state (`breaker.state` of an earlier run). Default: closed. */
  initialState?: CircuitState;
  /**
   * Share transitions with every breaker using the same store and key, in all processes.
   * Opt-in: one instance with a bad network path can then open the breaker for the whole
   * fleet. Counting stays per process; only open / closed / isolated transitions are shared.
   */
  shared?: SharedBreakerOptions;
  clock?: Clock;
}

export interface StateChangeEvent {
  from: CircuitState;
  to: CircuitState;
  /** 'local' for this breaker's own decision, 'store' when adopted from another process. */
  source: 'local' | 'store';
}

export interface CircuitBreakerEvents {
  stateChange: StateChangeEvent;
  /** The breaker opened (from closed or half-open). */
  break: { state: CircuitState & { status: 'open' } };
  halfOpen: { state: CircuitState };
  /** The breaker closed again. */
  reset: { state: CircuitState };
  isolate: { state: CircuitState };
  /** A call failed fast without running. */
  rejected: { state: CircuitState };
  /** The shared store failed; the breaker carries on with its local state. */
  storeError: { error: unknown };
}

/**
 * A circuit breaker. Stops calling a dependency that keeps failing, so it can recover and the
 * caller fails fast instead of queueing. Open becomes half-open lazily, on the first call (or
 * read of `state`) after `openMs`: no timer is ever left running.
 */
export class CircuitBreakerPolicy extends Policy {
  readonly events = new TypedEvents<CircuitBreakerEvents>();
  readonly #detector: FailureDetector;
  readonly #openMs: number;
  readonly #probes: number;
  readonly #handle: ((error: unknown) => boolean) | undefined;
  readonly #handleResult: ((result: unknown) => boolean) | undefined;
  readonly #clock: Clock;
  readonly #shared: Required<SharedBreakerOptions> | undefined;
  #state: CircuitState;
  /** Bumped on every transition: outcomes of calls admitted under an older state are ignored. */
  #generation = 0;
  #probesInFlight = 0;
  #probeSuccesses = 0;
  #version = 0;
  #nextSyncAt = 0;
  #syncing = false;
  #writes: Promise<void> = Promise.resolve();

  constructor(options: CircuitBreakerOptions = {}) {
    super();
    requireObject('options', options);
    this.#detector = createDetector(options.threshold ?? { kind: 'consecutive', failures: 5 });
    this.#openMs = requireNumber('openMs', options.openMs ?? 10_000, 0);
    this.#probes = requireInteger('halfOpenProbes', options.halfOpenProbes ?? 1, 1);
    this.#handle = requireFunction('handle', options.handle);
    this.#handleResult = requireFunction('handleResult', options.handleResult);
    this.#clock = options.clock ?? systemClock;
    if (options.initialState !== undefined && !isCircuitState(options.initialState)) {
      throw new InvalidArgumentError(
        'initialState',
        'a CircuitState (breaker.state of an earlier run)',
        options.initialState,
      );
    }
    // A saved half-open state resumes as half-open with no probe in flight.
    this.#state = options.initialState ?? { status: 'closed', since: this.#clock.now() };
    if (options.shared !== undefined) {
      const { store, key, syncMs = 1000 } = options.shared;
      if (typeof store?.compareAndSet !== 'function')
        throw new InvalidArgumentError('shared.store', 'a BreakerStateStore', store);
      if (typeof key !== 'string' || key === '')
        throw new InvalidArgumentError('shared.key', 'a non-empty string', key);
      this.#shared = { store, key, syncMs: requireNumber('shared.syncMs', syncMs, 0) };
    }
  }

  on<K extends keyof CircuitBreakerEvents>(
    name: K,
    listener: Listener<CircuitBreakerEvents[K]>,
  ): ListenerHandle {
    return this.events.on(name, listener);
  }

  /** The current state, as plain data. */
  get state(): CircuitState {
    this.#refresh(this.#clock.now());
    return this.#state;
  }

  /** Counts in the current window (since the last transition). */
  stats(): WindowStats {
    return this.#detector.stats(this.#clock.now());
  }

  /** Opens the breaker by hand until `reset()`: for an operator taking a dependency out. */
  isolate(): void {
    this.#transition({ status: 'isolated', since: this.#clock.now() }, 'local');
  }

  /** Closes the breaker by hand, whatever its state, and clears the counts. */
  reset(): void {
    this.#transition({ status: 'closed', since: this.#clock.now() }, 'local');
  }

  /** Waits until every shared-store write issued so far has finished (tests, shutdown). */
  flush(): Promise<void> {
    return this.#writes;
  }

  [runPolicy]<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    // Fast path: closed and nothing to sync, one `.then` instead of an async frame. Outcomes
    // count against the state the breaker is in when they arrive (a closed window).
    if (this.#state.status === 'closed' && this.#shared === undefined) {
      if (!this.#detector.tracksSlowCalls) {
        return start(next, fn, context).then(this.#closedSuccess, (error: unknown) =>
          this.#closedFailure(error, context, 0),
        );
      }
      const began = this.#clock.now();
      return start(next, fn, context).then(
        (result) => this.#closedSuccess(result, began),
        (error: unknown) => this.#closedFailure(error, context, began),
      );
    }
    return this.#guarded(fn, context, next);
  }

  readonly #closedSuccess = <T>(result: T, began = 0): T => {
    // The common success path, without the generic bookkeeping of #settle.
    if (this.#handleResult === undefined && !this.#detector.usesClock && this.#state.status === 'closed') {
      // A success can still open a rate window that just reached its minimum of calls.
      const reason = this.#detector.record(false, false, 0);
      if (reason !== undefined) this.#open(reason);
    } else this.#settleResult(this.#generation, false, result, began);
    return result;
  };

  #closedFailure(error: unknown, context: PolicyContext, began: number): never {
    this.#settleError(this.#generation, false, error, context, began);
    throw error;
  }

  async #guarded<T>(fn: Operation<T>, context: PolicyContext, next: Next): Promise<T> {
    const detector = this.#detector;
    const now =
      detector.tracksSlowCalls || this.#shared !== undefined || this.#state.status !== 'closed'
        ? this.#clock.now()
        : 0;
    if (this.#shared !== undefined && now >= this.#nextSyncAt) this.#sync(now);
    const probe = this.#state.status !== 'closed' && this.#admit(now);
    const generation = this.#generation;
    let result: T;
    try {
      result = await next.call(fn, context);
    } catch (error) {
      this.#settleError(generation, probe, error, context, now);
      throw error;
    }
    this.#settleResult(generation, probe, result, now);
    return result;
  }

  /**
   * Settles a failed call. The caller giving up says nothing about the dependency's health.
   * A `handle` that throws (`e.response.status` on a network error) counts as a failure and
   * its error propagates: skipping the settle would keep a probe slot taken for ever.
   */
  #settleError(
    generation: number,
    probe: boolean,
    error: unknown,
    context: PolicyContext,
    began: number,
  ): void {
    let outcome = 1;
    try {
      outcome = !context.aborted && (this.#handle === undefined || this.#handle(error)) ? 1 : -1;
    } finally {
      this.#settle(generation, probe, outcome, began);
    }
  }

  /** Settles a call that returned; a `handleResult` that throws counts as a failure, as above. */
  #settleResult(generation: number, probe: boolean, result: unknown, began: number): void {
    let outcome = 1;
    try {
      outcome = this.#handleResult !== undefined && this.#handleResult(result) ? 1 : 0;
    } finally {
      this.#settle(generation, probe, outcome, began);
    }
  }

  /** Lets a call through a non-closed breaker as a probe, or throws. */
  #admit(now: number): boolean {
    this.#refresh(now);
    const state = this.#state;
    if (state.status === 'half-open' && this.#probesInFlight + this.#probeSuccesses < this.#probes) {
      this.#probesInFlight++;
      return true;
    }
    if (state.status === 'closed') return false;
    if (this.events.has('rejected')) this.events.emit('rejected', { state });
    if (state.status === 'isolated') throw new IsolatedCircuitError();
    throw new BrokenCircuitError(state, state.status === 'open' ? state.until - now : undefined);
  }

  /** @param outcome 1 failure, 0 success, -1 ignored (not a verdict on the dependency). */
  #settle(generation: number, probe: boolean, outcome: number, start: number): void {
    if (generation !== this.#generation) return;
    if (probe) {
      this.#probesInFlight--;
      if (outcome === 1) this.#open('probe-failed');
      else if (outcome === 0 && ++this.#probeSuccesses >= this.#probes) {
        this.#transition({ status: 'closed', since: this.#clock.now() }, 'local');
      }
      return;
    }
    if (outcome === -1 || this.#state.status !== 'closed') return;
    const detector = this.#detector;
    const end = detector.usesClock ? this.#clock.now() : 0;
    const reason = detector.record(outcome === 1, end - start >= detector.slowCallMs, end);
    if (reason !== undefined) this.#open(reason);
  }

  #open(reason: OpenReason): void {
    const now = this.#clock.now();
    this.#transition({ status: 'open', since: now, until: now + this.#openMs, reason }, 'local');
  }

  #refresh(now: number): void {
    const state = this.#state;
    if (state.status === 'open' && now >= state.until) {
      this.#transition({ status: 'half-open', since: state.until }, 'local');
    }
  }

  #transition(to: CircuitState, source: 'local' | 'store'): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#probesInFlight = 0;
    this.#probeSuccesses = 0;
    this.#detector.reset();
    // Half-open is reached by every process on its own clock, so it is not written.
    if (source === 'local' && to.status !== 'half-open' && this.#shared !== undefined) this.#write(to);
    const events = this.events;
    if (events.has('stateChange')) events.emit('stateChange', { from, to, source });
    if (to.status === 'open') events.emit('break', { state: to });
    else if (to.status === 'half-open') events.emit('halfOpen', { state: to });
    else if (to.status === 'closed') events.emit('reset', { state: to });
    else events.emit('isolate', { state: to });
  }

  /** Writes a local transition; losing the race means another process decided first: adopt it. */
  #write(state: CircuitState): void {
    const shared = this.#shared!;
    this.#writes = this.#writes.then(async () => {
      try {
        const expected = this.#version;
        let { saved, record } = await shared.store.compareAndSet(shared.key, expected, state);
        if (!saved && record.version === 0 && expected !== 0) {
          // The store lost every record (a restart, an evicted key): ours is the first again.
          ({ saved, record } = await shared.store.compareAndSet(shared.key, 0, state));
        }
        if (saved) this.#version = record.version;
        // A reply that crossed a background read may be older than what that read adopted.
        else this.#adopt(record, this.#version === expected);
      } catch (error) {
        this.events.emit('storeError', { error });
      }
    });
  }

  #sync(now: number): void {
    if (this.#syncing) return;
    const shared = this.#shared!;
    this.#syncing = true;
    this.#nextSyncAt = now + shared.syncMs;
    const version = this.#version;
    shared.store.load(shared.key).then(
      (record) => {
        this.#syncing = false;
        // A read that crossed one of our own writes may predate it: only a read during which
        // our version stood still says what the store holds now.
        const current = this.#version === version;
        if (record !== undefined) this.#adopt(record, current);
        else if (current) this.#version = 0; // the store lost our record: the next write is the first
      },
      (error: unknown) => {
        this.#syncing = false;
        this.events.emit('storeError', { error });
      },
    );
  }

  /**
   * Takes a newer record from another process. A version below ours, read while nothing of
   * ours was in flight, means the store lost what it had (restarted empty, evicted the key)
   * and others have written since: adopting it keeps the fleet sharing.
   */
  #adopt(record: StoredBreakerState, current: boolean): void {
    if (!isCircuitState(record.state)) return;
    if (record.version === this.#version || (record.version < this.#version && !current)) return;
    this.#version = record.version;
    const remote = record.state;
    if (remote.status !== this.#state.status || remote.since !== this.#state.since)
      this.#transition(remote, 'store');
  }
}

export function circuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreakerPolicy {
  return new CircuitBreakerPolicy(options);
}
