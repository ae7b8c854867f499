// Whether a runner reaches its database. A runner that lost it keeps running: it polls, fails,
// emits `error`, and recovers on its own when the database answers again; meanwhile its state is
// still 'running'. This keeps the outcome of its own statements (polls, heartbeats) so that a
// health endpoint can read that state instead of counting `error` events.
import type { ServiceState } from '../service/service.ts';
import type { Clock } from '../time/index.ts';

/** What `SagaRunner.health()` returns: plain data, for a health endpoint or a gauge. */
export type SagaRunnerHealth =
  /** Not running (idle, starting, stopping, stopped or failed: `state`): it does no work at all. */
  | { readonly status: 'not-running'; readonly state: ServiceState }
  /** Its last poll or heartbeat reached the database, at `lastContactAt` (ms, the runner's clock). */
  | { readonly status: 'ok'; readonly lastContactAt: number }
  /**
   * Its polls and heartbeats have failed `failures` times in a row since `since`, `lastError`
   * the last; or none has answered for longer than a lease (`failures` 0, `lastError` undefined:
   * a statement hangs). It takes no instance, its leases run out and other runners take its
   * instances over. It goes back to 'ok' on its own at its next statement that succeeds.
   */
  | {
      readonly status: 'failing';
      readonly since: number;
      readonly failures: number;
      readonly lastError: unknown;
      readonly lastContactAt: number | undefined;
    };

/** The outcomes of a runner's own statements, kept for `health()`. */
export class DatabaseContact {
  readonly #clock: Clock;
  readonly #silentMs: number;
  #lastContactAt: number | undefined;
  #failingSince: number | undefined;
  #failures = 0;
  #lastError: unknown;

  /** `silentMs`: how long without an answer means failing even though nothing failed. */
  constructor(clock: Clock, silentMs: number) {
    this.#clock = clock;
    this.#silentMs = silentMs;
  }

  succeeded(): void {
    this.#lastContactAt = this.#clock.now();
    this.#failingSince = undefined;
    this.#failures = 0;
    this.#lastError = undefined;
  }

  failed(error: unknown): void {
    this.#failingSince ??= this.#clock.now();
    this.#failures += 1;
    this.#lastError = error;
  }

  health(state: ServiceState): SagaRunnerHealth {
    if (state !== 'running') return { status: 'not-running', state };
    const lastContactAt = this.#lastContactAt;
    if (this.#failingSince !== undefined) {
      return {
        status: 'failing',
        since: this.#failingSince,
        failures: this.#failures,
        lastError: this.#lastError,
        lastContactAt,
      };
    }
    if (lastContactAt === undefined || this.#clock.now() - lastContactAt > this.#silentMs) {
      return {
        status: 'failing',
        since: lastContactAt ?? this.#clock.now(),
        failures: 0,
        lastError: undefined,
        lastContactAt,
      };
    }
    return { status: 'ok', lastContactAt };
  }
}
