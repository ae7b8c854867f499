import type { Consumer } from '@platformatic/kafka';
import { KeelError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { ConnectionLoss } from '../../delivery-source.ts';
import { describeError } from '../../describe-error.ts';

/**
 * How long a Kafka source's fetch stream may stay ended before `connectionLost()` says so, when
 * nothing else says the link is lost: 5 s.
 *
 * The client ends a stream whenever one of its fetches fails for good, and that is also how it
 * follows a partition's leader to another broker: a stream's fetch goes to the node the cached
 * metadata names as leader, and its retries go to that same node (`options.node` is fixed for the
 * request in @platformatic/kafka's `Consumer#fetch`), so a leader that moved answers
 * NOT_LEADER_OR_FOLLOWER, or a leader broker restarting refuses the connection, until the
 * client's retries run out (three, 1 s apart) and the stream is destroyed. The source's reopen
 * asks for metadata afresh and fetches from the new leader. Such an end is a normal event of a
 * cluster (a rolling restart, a reassignment, a preferred-leader election), not a lost link: the
 * cluster kept answering. What tells the two apart is the rest of the link: the consumer's own
 * connections (to the group coordinator, for metadata: down too when the cluster is gone), the
 * group's heartbeats (they fail within seconds then) and the reopen itself (it must join the
 * group and read the committed offsets). So a stream that ended is reported at once when any of
 * those is down or fails, and otherwise only once it has been down for this long, reopens that
 * went through but whose stream ended again within it included (a partition left without a
 * leader): a controlled move hands the leadership over in well under a second, and the reopen
 * (0.5 s after the end, then a rejoin of the group) is done in a second or two more.
 */
export const switchOverMs = 5_000;

/** What a source does as its client's group membership comes and goes (see `followGroup`). */
export interface GroupHooks {
  /** Whether the client is still the source's. */
  current(): boolean;
  /** After a failure is recorded: to schedule a rejoin. */
  failed(error: unknown): void;
  /** After an answer is recorded. */
  answered(): void;
}

/**
 * What a Kafka source knows of its own link to the cluster, for `connectionLost()`: its fetch
 * stream ended and not reopened, or its group membership lost (heartbeats failed, no join since).
 * All of it is learnt from the client's events and the source's own reopens: nothing here asks
 * the broker.
 */
export class KafkaSourceLink {
  readonly #clock: Clock;
  /** Who lost the group, for the errors: `the Kafka consumer for orders`. */
  #who = 'the Kafka consumer';
  /** The fetch stream ended and is not open again yet. */
  #stream: ConnectionLoss | undefined;
  /** It ended while the consumer's own connections were down: the link, not a leader. */
  #linkDownAtEnd = false;
  /** The last reopen after a loss: when, and the since of the loss it ended. */
  #reopened: { at: number; lostSince: number } | undefined;
  /** The group's heartbeats failed, and no join has gone through since. */
  #group: ConnectionLoss | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Whether the fetch stream ended and is not open again. */
  get streamLost(): boolean {
    return this.#stream !== undefined;
  }

  /** Whether the group membership is lost (heartbeats failed) and no join has gone through since. */
  get groupLost(): boolean {
    return this.#group !== undefined;
  }

  /** Failed attempts to recover what is lost: the stream's reopens, else the group's rejoins. */
  get attempts(): number {
    return (this.#stream ?? this.#group)?.attempts ?? 0;
  }

  /**
   * The stream's error or end, the first of it (its `close` follows its `error`). `linkDown`:
   * the consumer's own connections (to the group coordinator, for metadata) were not all up
   * then, so the cluster was not answering it either: reported at once.
   */
  streamEnded(error: unknown, linkDown: boolean): void {
    if (this.#stream !== undefined) return;
    this.#linkDownAtEnd = linkDown;
    const now = this.#clock.now();
    // A stream reopened a moment ago that ends again has not been back: one loss, not a new one
    // each time (a partition without a leader ends every stream its reopen opens).
    const reopened = this.#reopened;
    const since = reopened !== undefined && now - reopened.at < switchOverMs ? reopened.lostSince : now;
    this.#stream = { since, attempts: 0, error };
  }

  /** A reopen of the ended stream failed with `error`. */
  reopenFailed(error: unknown): void {
    const loss = this.#stream;
    if (loss !== undefined) this.#stream = { ...loss, attempts: loss.attempts + 1, error };
  }

  /** A stream is open: the first, or a reopen. */
  streamOpened(): void {
    const loss = this.#stream;
    if (loss !== undefined) this.#reopened = { at: this.#clock.now(), lostSince: loss.since };
    this.#stream = undefined;
  }

  /**
   * Follows `consumer`'s group membership from its events, while `hooks.current()` says it is the
   * source's client (a client replaced is closed, and what it emits after is not the link's).
   * `who` names the consumer in the errors.
   */
  followGroup(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>, who: string, hooks: GroupHooks): void {
    this.#who = who;
    const answered = (): void => {
      if (!hooks.current()) return;
      this.groupAnswered();
      hooks.answered();
    };
    const failed = (error: unknown): void => {
      if (!hooks.current()) return;
      this.groupFailed(error);
      hooks.failed(error);
    };
    consumer.on('consumer:group:join', answered);
    consumer.on('consumer:heartbeat:end', answered);
    // A failed heartbeat is the only word of a lost link while the stream is paused (it fetches
    // nothing, so nothing of it fails). After one the client sends no more heartbeats until a
    // join (its handler clears the timer it then means to refresh): the member drops out of its
    // group unless someone rejoins.
    consumer.on('consumer:heartbeat:error', ({ error }) => failed(error));
    // Emitted when a rejoin the client began itself (a heartbeat was told to rejoin) fails: no
    // heartbeats either from then on. Without a listener the emit would throw.
    consumer.on('error', failed);
  }

  /**
   * The group membership failed: the heartbeats, a rejoin the client began itself, or the
   * source's own rejoin. The first is the loss; the later ones count as failed attempts.
   */
  groupFailed(cause: unknown): void {
    const error = new KeelError(
      'KEEL_BROKER_UNAVAILABLE',
      `${this.#who} lost its group membership: ${describeError(cause)}`,
      { cause },
    );
    const loss = this.#group;
    this.#group =
      loss === undefined
        ? { since: this.#clock.now(), attempts: 0, error }
        : { ...loss, attempts: loss.attempts + 1, error };
  }

  /** A join (or a heartbeat) went through: the membership is back. */
  groupAnswered(): void {
    this.#group = undefined;
  }

  /**
   * The loss to report, if any: the group's at once; the stream's at once when the group's is
   * there too, a reopen failed or it ended with the consumer's connections down, else once it
   * has lasted `switchOverMs` (a partition's leader moving ends a stream, see `switchOverMs`).
   * With both, the earlier: it names the failure.
   */
  lost(): ConnectionLoss | undefined {
    const group = this.#group;
    let stream = this.#stream;
    if (
      stream !== undefined &&
      group === undefined &&
      !this.#linkDownAtEnd &&
      stream.attempts === 0 &&
      this.#clock.now() - stream.since < switchOverMs
    )
      stream = undefined;
    if (stream === undefined || group === undefined) return stream ?? group;
    return group.since < stream.since ? group : stream;
  }
}
