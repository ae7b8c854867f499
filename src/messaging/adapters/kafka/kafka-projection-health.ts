// What a KafkaProjectionRunner's `health()` reads: the outcome of its running loop's own calls to
// Kafka and to the database. A look makes several calls (metadata, the stored offsets, a fetch,
// batches); the look's calls go through `LookCalls`, so that a look that failed is put down to
// the call it was waiting on, and not to the projection's own code or to what the data is.
import { HealthRecord, type ServiceHealth, type ServiceState } from '../../../service/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { TopicReads } from './kafka-projection-fetch.ts';
import { staleLeaderAnswers } from './stale-leader.ts';

/** What a projection runner depends on: Kafka, and the database that holds its model and offsets. */
export type ProjectionDependency = 'broker' | 'database';

/**
 * How a look makes its calls. `call`: one to Kafka or to the database. `projection`: the
 * projection's own code within such a call (`apply`, inside a batch's transaction); a throw
 * from it is the projection's failure, not the database's.
 */
export interface LookCalls {
  call<T>(dependency: ProjectionDependency, work: () => Promise<T>): Promise<T>;
  projection<T>(work: () => Promise<T>): Promise<T>;
}

/** The calls as they are, kept nowhere: the looks of `catchUp()`, whose failures are its caller's. */
export const unrecordedCalls: LookCalls = {
  call: (_dependency, work) => work(),
  projection: (work) => work(),
};

/** `fetcher`'s reads, each made through `calls` as a call to Kafka. */
export function brokerCalls(fetcher: TopicReads, calls: LookCalls): TopicReads {
  if (calls === unrecordedCalls) return fetcher;
  return {
    topic: fetcher.topic,
    current: (fresh) => calls.call('broker', () => fetcher.current(fresh)),
    ranges: () => calls.call('broker', () => fetcher.ranges()),
    fetch: (from, maxWaitMs) => calls.call('broker', () => fetcher.fetch(from, maxWaitMs)),
  };
}

/**
 * The running loop's record of its looks' calls. Each look counts once per dependency: when it
 * goes through, each dependency it called answered; when it fails, the call it was waiting on
 * failed and the others answered. So Kafka's metadata answering does not clear a failure of the
 * fetch that follows it: `failures` counts looks, from the first that failed.
 *
 * A look that failed in the projection's own code (`apply` threw), or on what Kafka said of the
 * data (records trimmed, a topic recreated: `KafkaPartitionTrimmedError` and the like are thrown
 * after Kafka answered), failed no dependency. Neither does a look whose stale-leader failure
 * the loop retries quietly (`quiet`: until `staleLeaderLimitMs`, with no `error` event), though
 * it clears no failure either: from the first it reports, it fails Kafka, an out-of-range answer
 * for offsets that were valid (`KafkaStaleOutOfRangeError`) too.
 *
 * A call in flight for longer than `silentMs` is failing, with `failures` 0 (it hangs). The
 * silence is of calls, not of the loop: a topic that does not exist yet calls on no database,
 * and a long `apply` is no call.
 */
export class LoopHealth implements LookCalls {
  readonly #clock: Clock;
  readonly #record: HealthRecord<ProjectionDependency>;
  readonly #silentMs: number;
  readonly #during: () => string;
  /** The call the look waits on, and since when; undefined between calls and in `apply`. */
  #waiting: { dependency: ProjectionDependency; since: number } | undefined;
  /** The dependencies that answered during the look under way. */
  readonly #answered = new Set<ProjectionDependency>();

  /** `during`: what the loop is doing now (`'fetch'` or `'apply'`), for a call that hangs. */
  constructor(clock: Clock, silentMs: number, during: () => string) {
    this.#clock = clock;
    this.#record = new HealthRecord(clock, { broker: {}, database: {} });
    this.#silentMs = silentMs;
    this.#during = during;
  }

  /** A fresh start: earlier outcomes are forgotten. */
  started(): void {
    this.#record.started();
    this.#waiting = undefined;
    this.#answered.clear();
  }

  async call<T>(dependency: ProjectionDependency, work: () => Promise<T>): Promise<T> {
    this.#waiting = { dependency, since: this.#clock.now() };
    // A throw leaves `#waiting` set: the look failed on this call.
    const result = await work();
    this.#waiting = undefined;
    this.#answered.add(dependency);
    return result;
  }

  async projection<T>(work: () => Promise<T>): Promise<T> {
    const around = this.#waiting;
    this.#waiting = undefined;
    // A throw leaves `#waiting` unset: the look failed in the projection, not in its call.
    const result = await work();
    if (around !== undefined) this.#waiting = { dependency: around.dependency, since: this.#clock.now() };
    return result;
  }

  /** The look went through: each dependency it called answered. */
  lookedThrough(): void {
    for (const dependency of this.#answered) this.#record.succeeded(dependency);
    this.#answered.clear();
  }

  /**
   * The look failed with `error`, `during` what: the dependency whose call it was waiting on
   * failed (unless `quiet`: a stale-leader failure the loop retries without reporting it), and
   * each other it called answered. A stale-leader failure is Kafka's even when no call was
   * waiting: a fetch refused as out of range is found stale only once the ranges asked after it
   * answered (`KafkaStaleOutOfRangeError`), and Kafka's answers that look must not clear a
   * failure as if it went through.
   */
  lookFailed(error: unknown, during: string, quiet: boolean): void {
    const failed =
      this.#waiting?.dependency ?? (staleLeaderAnswers(error) === undefined ? undefined : 'broker');
    this.#waiting = undefined;
    if (failed !== undefined) this.#answered.delete(failed);
    this.lookedThrough();
    if (failed !== undefined && !quiet) this.#record.failed(failed, error, during);
  }

  health(state: ServiceState): ServiceHealth {
    const recorded = this.#record.health(state);
    const waiting = this.#waiting;
    if (recorded.status !== 'ok' || waiting === undefined) return recorded;
    if (this.#clock.now() - waiting.since <= this.#silentMs) return recorded;
    return {
      status: 'failing',
      dependency: waiting.dependency,
      during: this.#during(),
      // As HealthRecord's silence: failing from when the call outlasted the bound.
      since: waiting.since + this.#silentMs,
      failures: 0,
      lastError: undefined,
      lastContactAt: recorded.lastContactAt,
    };
  }
}
