// Whether a running service reaches what it depends on. A service that lost its database or
// broker keeps running: it retries, emits `error`, and recovers on its own when the dependency
// answers again, while its state stays 'running'. A health endpoint or a gauge reads this record
// of its own calls' outcomes instead of counting `error` events.
import { InvalidArgumentError } from '../errors/index.ts';
import type { Clock } from '../time/index.ts';
import type { ServiceState } from './service.ts';

/** What a service's `health()` returns: plain data, for a health endpoint or a gauge. */
export type ServiceHealth =
  /** Not running (idle, starting, stopping, stopped or failed: `state`): it does no work at all. */
  | { readonly status: 'not-running'; readonly state: ServiceState }
  /**
   * Its last call to each dependency succeeded; `lastContactAt` is the latest answer (ms, the
   * service's clock), undefined while none has answered since the start yet.
   */
  | { readonly status: 'ok'; readonly lastContactAt: number | undefined }
  /**
   * Its calls to `dependency` have failed `failures` times in a row since `since`, `lastError`
   * the last, in `during` (what the service was doing); or none has answered for longer than
   * the dependency allows (`failures` 0, `lastError` undefined: a call hangs; `since` is when
   * the silence outlasted that bound). It goes back to
   * 'ok' on its own at its next call to that dependency that succeeds.
   */
  | {
      readonly status: 'failing';
      readonly dependency: string;
      readonly during: string | undefined;
      readonly since: number;
      readonly failures: number;
      readonly lastError: unknown;
      readonly lastContactAt: number | undefined;
    };

/** A service that can say whether it reaches its dependencies. */
export interface ReportsHealth {
  health(): ServiceHealth;
}

/** Whether `service` has a `health()` to read. */
export function reportsHealth(service: object): service is ReportsHealth {
  return typeof (service as Partial<ReportsHealth>).health === 'function';
}

export interface DependencyOptions {
  /**
   * How long without any answer means failing although nothing failed: a call that hangs. Set
   * it for a dependency the service calls on a schedule (a poll, a heartbeat); leave it out
   * for one it calls only when there is work. Counted from the start until the first answer.
   */
  silentMs?: number;
  /**
   * How long one call may stay open (made through `track` or marked by `calling`) before the
   * dependency is failing although nothing failed: it hangs. For a dependency called only when
   * there is work, where silence says nothing: an idle service makes no call, a stuck one has
   * one open. Default: open calls are not watched.
   */
  hangMs?: number;
}

/** A call still open, for `hangMs`. */
interface OpenCall {
  readonly since: number;
  readonly during: string;
}

const closeNothing = (): void => {};

interface DependencyRecord {
  readonly silentMs: number | undefined;
  readonly hangMs: number | undefined;
  /** Oldest first (the clock does not go back); only kept with `hangMs`. */
  readonly open: Set<OpenCall>;
  lastContactAt: number | undefined;
  failingSince: number | undefined;
  failures: number;
  lastError: unknown;
  during: string | undefined;
}

/**
 * The outcomes of a service's calls, per dependency (`'database'`, `'broker'`, …), kept for
 * `health()`. The service reports each call's outcome; a success clears only its own
 * dependency's failures, so a relay whose database answers while its broker does not is failing.
 */
export class HealthRecord<D extends string = string> {
  readonly #clock: Clock;
  readonly #dependencies = new Map<D, DependencyRecord>();
  #startedAt: number;

  constructor(clock: Clock, dependencies: Readonly<Record<D, DependencyOptions>>) {
    this.#clock = clock;
    this.#startedAt = clock.now();
    for (const [name, options] of Object.entries(dependencies) as [D, DependencyOptions][]) {
      if (options.silentMs !== undefined && !(options.silentMs > 0)) {
        throw new InvalidArgumentError(`${name}.silentMs`, 'a number of ms > 0', options.silentMs);
      }
      if (options.hangMs !== undefined && !(options.hangMs > 0)) {
        throw new InvalidArgumentError(`${name}.hangMs`, 'a number of ms > 0', options.hangMs);
      }
      this.#dependencies.set(name, {
        silentMs: options.silentMs,
        hangMs: options.hangMs,
        open: new Set(),
        lastContactAt: undefined,
        failingSince: undefined,
        failures: 0,
        lastError: undefined,
        during: undefined,
      });
    }
  }

  /** A fresh start: earlier outcomes are forgotten and silence is counted from now. */
  started(): void {
    this.#startedAt = this.#clock.now();
    for (const record of this.#dependencies.values()) {
      record.lastContactAt = undefined;
      record.open.clear();
      this.#clear(record);
    }
  }

  /**
   * Marks a call to `dependency` (`during` says what for) open until the returned function is
   * called: with `hangMs`, one open longer than that makes the dependency failing. Its outcome
   * is recorded apart (`succeeded`, `failed`); `track` does both.
   */
  calling(dependency: D, during: string): () => void {
    const record = this.#record(dependency);
    if (record.hangMs === undefined) return closeNothing;
    const call: OpenCall = { since: this.#clock.now(), during };
    record.open.add(call);
    return () => void record.open.delete(call);
  }

  succeeded(dependency: D): void {
    const record = this.#record(dependency);
    record.lastContactAt = this.#clock.now();
    this.#clear(record);
  }

  /**
   * Runs one call to `dependency` (`during` says what for) and records its outcome: a success
   * when it resolves, a failure when it rejects. Its result or its error passes through.
   */
  async track<T>(dependency: D, during: string, call: () => PromiseLike<T>): Promise<T> {
    const close = this.calling(dependency, during);
    let result: T;
    try {
      result = await call();
    } catch (error) {
      close();
      this.failed(dependency, error, during);
      throw error;
    }
    close();
    this.succeeded(dependency);
    return result;
  }

  failed(dependency: D, error: unknown, during?: string): void {
    const record = this.#record(dependency);
    record.failingSince ??= this.#clock.now();
    record.failures += 1;
    record.lastError = error;
    record.during = during;
  }

  /** The health of a service in `state`: the dependency failing longest names the failure. */
  health(state: ServiceState): ServiceHealth {
    if (state !== 'running') return { status: 'not-running', state };
    const now = this.#clock.now();
    let failing: Extract<ServiceHealth, { status: 'failing' }> | undefined;
    let lastContactAt: number | undefined;
    for (const [dependency, record] of this.#dependencies) {
      if (record.lastContactAt !== undefined)
        lastContactAt = Math.max(lastContactAt ?? 0, record.lastContactAt);
      const failure = this.#failure(record, now);
      if (failure === undefined) continue;
      const { since, during } = failure;
      if (failing !== undefined && failing.since <= since) continue;
      failing = {
        status: 'failing',
        dependency,
        during,
        since,
        failures: record.failures,
        lastError: record.lastError,
        lastContactAt: record.lastContactAt,
      };
    }
    return failing ?? { status: 'ok', lastContactAt };
  }

  /**
   * Since when `record`'s dependency is failing at `now`, and doing what: its calls failing in a
   * row, silence past `silentMs`, or a call open past `hangMs` — the earliest. A bound outlasted
   * is failing from the moment it was outlasted, not from the last answer or the call's start:
   * else a dependency gone quiet would outrank one that failed outright in the meantime.
   */
  #failure(record: DependencyRecord, now: number): { since: number; during: string | undefined } | undefined {
    let failure =
      record.failingSince === undefined ? undefined : { since: record.failingSince, during: record.during };
    const quietSince = record.lastContactAt ?? this.#startedAt;
    if (failure === undefined && record.silentMs !== undefined && now - quietSince > record.silentMs)
      failure = { since: quietSince + record.silentMs, during: record.during };
    if (record.hangMs !== undefined) {
      for (const call of record.open) {
        // The first is the oldest: if it has not outlasted the bound, none has.
        if (
          now - call.since > record.hangMs &&
          (failure === undefined || call.since + record.hangMs < failure.since)
        )
          failure = { since: call.since + record.hangMs, during: call.during };
        break;
      }
    }
    return failure;
  }

  #record(dependency: D): DependencyRecord {
    const record = this.#dependencies.get(dependency);
    if (record === undefined)
      throw new InvalidArgumentError('dependency', 'a dependency the record was made with', dependency);
    return record;
  }

  #clear(record: DependencyRecord): void {
    record.failingSince = undefined;
    record.failures = 0;
    record.lastError = undefined;
    record.during = undefined;
  }
}
