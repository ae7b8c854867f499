// How a projection runner's one-shot calls (catchUp(), partitions(), progress(), lag()) ride out
// a partition's leader moving, as its running loop does: the failure retried after a delay on
// fresh metadata, for a bounded time, and the wait ended by stop().
import { sleep, type Clock } from '../../../time/index.ts';
import { StaleLeaderRun } from './stale-leader.ts';

export interface StaleLeaderRetrySettings {
  readonly clock: Clock;
  /** The wait before each retry: the runner's `retryDelayMs`. */
  readonly retryDelayMs: number;
  /** How long stale-leader failures may go on before the call fails: the runner's `staleLeaderLimitMs`. */
  readonly limitMs: number;
  /** Aborts when the runner is stopped: a wait in progress ends, and none begins after. */
  readonly stopped: AbortSignal;
  /** What the call rejects with when `stopped` ends its wait (or forestalls it); `failure` is the stale-leader one. */
  readonly whenStopped: (failure: unknown) => Error;
}

/**
 * One one-shot call's retries of failures whose Kafka answers all say a partition's leader moved
 * or is being elected (`staleLeaderAnswers`): each is tried again after `retryDelayMs`, until
 * such failures have gone on for `limitMs` with no attempt through; then the call rejects with
 * the last failure, as it is. Any other failure rejects at once, as it is. The retry asks Kafka
 * for the metadata afresh without being told to: the fetcher marks its metadata stale at every
 * failure.
 *
 * One per call, never shared with the running loop nor with another call: an attempt that went
 * through ends only its own call's run. Shared, a status page reading `lag()` every few seconds
 * (ListOffsets, by topic name) would end, at each read, the run of the loop's fetches (by topic
 * id) failing on UNKNOWN_TOPIC_ID, which would then never be reported; and a call begun late in
 * another's run would have only what is left of its limit.
 */
export class StaleLeaderRetry {
  readonly #settings: StaleLeaderRetrySettings;
  readonly #run: StaleLeaderRun;

  constructor(settings: StaleLeaderRetrySettings) {
    this.#settings = settings;
    this.#run = new StaleLeaderRun(settings.clock, settings.limitMs);
  }

  /**
   * Runs `attempt` until it resolves, and resolves with it. A failure that `retriable` refuses
   * (say, one thrown while applying a batch: Kafka did not answer it) rejects at once. One
   * attempt through ends the run: a later attempt of the same call (`catchUp()`'s next look)
   * has the whole limit again.
   */
  async run<T>(attempt: () => Promise<T>, retriable: () => boolean = () => true): Promise<T> {
    for (;;) {
      try {
        const result = await attempt();
        this.#run.end();
        return result;
      } catch (failure) {
        if (!retriable() || !this.#run.quiet(failure)) throw failure;
        await this.#pause(failure);
      }
    }
  }

  async #pause(failure: unknown): Promise<void> {
    const { clock, retryDelayMs, stopped, whenStopped } = this.#settings;
    try {
      await sleep(retryDelayMs, { clock, signal: stopped });
    } catch {
      // Stopped: a command line interrupted while a leader was moving must not hang on it.
      throw whenStopped(failure);
    }
  }
}
