import { KeelError } from '../../../errors/index.ts';
import type { Clock, TimerHandle } from '../../../time/index.ts';
import { describeError } from '../../describe-error.ts';
import { refusedByCoordinator, type KafkaConsumer } from './kafka-source-client.ts';
import type { KafkaSourceLink } from './kafka-source-link.ts';

/**
 * Background reopens of a lost stream (and rejoins of a lost group): the first after this long,
 * doubling up to `reopenMaxMs`.
 */
const reopenFirstMs = 500;
const reopenMaxMs = 30_000;

/**
 * Group calls of one client failed in a row (its heartbeats, rejoins, reopens) after which the
 * next attempt is a new client even though no coordinator said it was not the group's: 3. A
 * coordinator that is gone for good (its broker out of the cluster or unreachable) fails them
 * as a network error, as a blip does; each already went through the client's own retries (three,
 * 1 s apart), so three in a row are well past a blip, and a new client costs only its lookup of
 * the coordinator and a rebalance that the failures had brought about anyway.
 */
export const staleClientFailures = 3;

/** What recovery does to its source. */
export interface KafkaSourceRecoveryHost {
  readonly clock: Clock;
  readonly link: KafkaSourceLink;
  /** The destination, for the errors. */
  readonly destination: string;
  closing(): boolean;
  /** Whether the source has a stream: open, or ended and not closed yet (its `close` schedules the next attempt). */
  hasStream(): boolean;
  /** The current client. */
  consumer(): KafkaConsumer;
  /** A new stream on the current client; the client joins the group first. */
  openStream(): Promise<void>;
  /** Closes the stream and the client, and puts a new client over the same group in its place. */
  replaceClient(): Promise<void>;
  /** What ended the last stream, for a failed reopen's error. */
  streamError(): unknown;
  wake(): void;
}

/**
 * How a Kafka source gets back what its link lost (see KafkaSourceLink): it reopens a lost
 * stream, or rejoins a lost group, in the background too, with backoff, until it is back: a
 * consumer whose every slot is busy makes no claim, and would otherwise fetch nothing (and stay
 * failing in `health()`) until a handler finishes, however soon Kafka is back; and a paused
 * stream does not rejoin at all.
 *
 * And it replaces a client that lost its group coordinator. @platformatic/kafka 1.35.0 asks for
 * a client's coordinator once and keeps the answer for good (consumer.js: `#coordinatorId` is
 * set by `#performFindGroupCoordinator` and reset nowhere; `#performGroupOperation` sends every
 * group call there), so once the group moves to another broker (its broker restarted or left,
 * the `__consumer_offsets` partition's leadership moved) every heartbeat, join and commit of that
 * client is refused NOT_COORDINATOR, or fails to connect, for as long as the client lives. A new
 * client looks the coordinator up again. So the next attempt is a new client once a failure of
 * the current one carries a coordinator's refusal (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
 * COORDINATOR_LOAD_IN_PROGRESS: each after the client's own retries against the same node), or
 * once `staleClientFailures` of its group calls failed in a row without saying why.
 */
export class KafkaSourceRecovery {
  readonly #host: KafkaSourceRecoveryHost;
  #timer: TimerHandle | undefined;
  #reopening: Promise<void> | undefined;
  #rejoining: Promise<void> | undefined;
  /** The current client's group calls that failed since it last answered. */
  #failures = 0;
  /** One of those failures was a coordinator saying it is not the group's. */
  #refused = false;

  constructor(host: KafkaSourceRecoveryHost) {
    this.#host = host;
  }

  /** A group call of the current client failed: its heartbeat, a rejoin it began, a rejoin or a reopen. */
  clientFailed(error: unknown): void {
    this.#failures++;
    if (refusedByCoordinator(error)) this.#refused = true;
  }

  /** The current client's group answered (a join or a heartbeat went through), or it is a new client. */
  clientAnswered(): void {
    this.#failures = 0;
    this.#refused = false;
  }

  get #stale(): boolean {
    return this.#refused || this.#failures >= staleClientFailures;
  }

  /** Schedules the next attempt while something is lost, unless one is scheduled already. */
  schedule(): void {
    const link = this.#host.link;
    if (this.#host.closing() || this.#timer !== undefined || !(link.streamLost || link.groupLost)) return;
    const delayMs = Math.min(reopenMaxMs, reopenFirstMs * 2 ** Math.min(link.attempts, 6));
    this.#timer = this.#host.clock.setTimeout(() => {
      this.#timer = undefined;
      if (this.#host.closing()) return;
      this.#recover().then(
        () => this.#host.wake(),
        () => this.schedule(),
      );
    }, delayMs);
  }

  /** Cancels the next attempt (the source closes). */
  cancel(): void {
    if (this.#timer !== undefined) this.#host.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * One attempt: a new stream when the last one is gone (it joins the group first), on a new
   * client when this one lost its coordinator; a rejoin when the stream is there and the group is
   * lost. A stream ended but not yet closed is left to its `close`, which schedules the next one.
   */
  #recover(): Promise<void> {
    if (!this.#host.hasStream() || this.#stale) return this.reopen();
    const link = this.#host.link;
    if (link.groupLost && !link.streamLost) return this.#rejoin();
    return Promise.resolve();
  }

  /** Joins the group again (the client restarts its heartbeats then); `consumer:group:join` clears the loss. */
  #rejoin(): Promise<void> {
    this.#rejoining ??= this.#host
      .consumer()
      .joinGroup({})
      .then(
        () => undefined,
        (error: unknown) => {
          this.clientFailed(error);
          this.#host.link.groupFailed(error);
          this.schedule();
          throw error;
        },
      )
      .finally(() => (this.#rejoining = undefined));
    return this.#rejoining;
  }

  /**
   * Opens a new stream (the client ended the last one, a fetch failed; or the client is being
   * replaced): a claim's failure backs off. A claim and a background attempt share one attempt,
   * counted once.
   */
  reopen(): Promise<void> {
    const host = this.#host;
    // After a rejoin in flight: two joins at once would each sync the group.
    const rejoined = this.#rejoining?.catch(() => undefined) ?? Promise.resolve();
    this.#reopening ??= rejoined
      .then(() => (this.#stale ? host.replaceClient() : undefined))
      .then(() => host.openStream())
      .catch((error: unknown) => {
        this.clientFailed(error);
        const failure = new KeelError(
          'KEEL_BROKER_UNAVAILABLE',
          `Kafka consumer for ${host.destination} lost its stream (${describeError(host.streamError())}) and could not reopen it: ${describeError(error)}`,
          { cause: error },
        );
        // A stream closed for a new client was not lost: the group was, and this attempt failed.
        if (host.link.streamLost) host.link.reopenFailed(failure);
        else host.link.groupFailed(error);
        throw failure;
      })
      .finally(() => (this.#reopening = undefined));
    return this.#reopening;
  }
}
