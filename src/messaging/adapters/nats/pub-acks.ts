import { JetStreamApiError, type PubAck } from '@nats-io/jetstream';
import {
  createInbox,
  NoRespondersError,
  TimeoutError,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { KeelError } from '../../../errors/index.ts';
import type { Clock } from '../../../time/index.ts';
import type { Encoded } from './codec.ts';

/** One message for `PubAckInbox.publishAll`. */
export interface JetStreamPublish {
  readonly encoded: Encoded;
  /** JetStream drops a second message with this id within the stream's duplicate window. */
  readonly msgID?: string;
}

/** Each message's PubAck, or why it was not stored. */
export type PublishOutcome = { ok: true; ack: PubAck } | { ok: false; error: Error };

interface Waiting {
  readonly subject: string;
  settle(outcome: PublishOutcome): void;
}

/**
 * Publishes to JetStream with every reply on one inbox subscription of the connection, matched
 * by a token in the reply subject, and one timer per call — the pattern of the Go client's
 * PublishAsync. `js.publish` makes a request of its own per message instead: a timer, a promise,
 * and an Error built for every success (nats-core 3.4's RequestOne ends each request with a
 * rejection that nobody reads). That cost 2.5 times the CPU per message and half the rate
 * (docs/benchmarks.md, NATS publish). The protocol is the same: each message carries the
 * `Nats-Msg-Id` and `Nats-Expected-Stream` headers `js.publish` would set, and the stream's
 * reply is its PubAck or its API error.
 */
export class PubAckInbox {
  readonly #nc: NatsConnection;
  readonly #clock: Clock;
  readonly #prefix: string;
  readonly #waiting = new Map<string, Waiting>();
  readonly #subscription: Subscription;
  #next = 0;

  constructor(nc: NatsConnection, clock: Clock) {
    this.#nc = nc;
    this.#clock = clock;
    // A connection opened with its own inbox prefix (for subject permissions) keeps it.
    const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.#prefix = `${createInbox(prefix)}.`;
    this.#subscription = nc.subscribe(`${this.#prefix}*`, {
      callback: (error, message) => {
        if (error === null) this.#onReply(message);
      },
    });
  }

  /**
   * Publishes each message to `subject` and resolves, in the order given, with each one's
   * outcome once every reply came or `timeoutMs` passed (the missing ones then failed with a
   * TimeoutError). It never rejects: a message the client refused to send fails alone.
   */
  publishAll(
    subject: string,
    stream: string,
    messages: readonly JetStreamPublish[],
    timeoutMs: number,
  ): Promise<PublishOutcome[]> {
    if (messages.length === 0) return Promise.resolve([]);
    const outcomes = new Array<PublishOutcome | undefined>(messages.length);
    const tokens: string[] = [];
    let left = messages.length;
    return new Promise<PublishOutcome[]>((resolve) => {
      const finish = (): void => {
        this.#clock.clearTimeout(timer);
        resolve(outcomes as PublishOutcome[]);
      };
      const timer = this.#clock.setTimeout(() => {
        for (let i = 0; i < tokens.length; i++) {
          if (outcomes[i] !== undefined) continue;
          this.#waiting.delete(tokens[i]!);
          outcomes[i] = { ok: false, error: new TimeoutError() };
        }
        resolve(outcomes as PublishOutcome[]);
      }, timeoutMs);
      for (let i = 0; i < messages.length; i++) {
        const { encoded, msgID } = messages[i]!;
        const token = (this.#next++).toString(36);
        tokens.push(token);
        const settle = (outcome: PublishOutcome): void => {
          if (outcomes[i] !== undefined) return;
          outcomes[i] = outcome;
          if (--left === 0) finish();
        };
        if (msgID !== undefined) encoded.headers.set('Nats-Msg-Id', msgID);
        encoded.headers.set('Nats-Expected-Stream', stream);
        this.#waiting.set(token, { subject, settle });
        try {
          this.#nc.publish(subject, encoded.data, { headers: encoded.headers, reply: this.#prefix + token });
        } catch (error) {
          // Too large for the server, a closed connection: this message fails, the rest go on.
          this.#waiting.delete(token);
          settle({ ok: false, error: error instanceof Error ? error : new Error(String(error)) });
        }
      }
    });
  }

  /** Stops listening for replies; what still waits for one fails now, not at its timeout. */
  close(): void {
    this.#subscription.unsubscribe();
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const entry of waiting) {
      entry.settle({
        ok: false,
        error: new KeelError(
          'KEEL_SERVICE_STATE',
          `the connection closed before JetStream answered on ${entry.subject}`,
        ),
      });
    }
  }

  #onReply(message: Msg): void {
    const token = message.subject.slice(this.#prefix.length);
    const waiting = this.#waiting.get(token);
    if (waiting === undefined) return;
    this.#waiting.delete(token);
    waiting.settle(readReply(message, waiting.subject));
  }
}

/** A reply as the stream sent it: its PubAck, its API error, or the server's "no responders". */
function readReply(message: Msg, subject: string): PublishOutcome {
  if (message.data.length === 0 && message.headers?.code === 503) {
    return { ok: false, error: new NoRespondersError(subject) };
  }
  let reply: (PubAck & { error?: undefined }) | { error: ConstructorParameters<typeof JetStreamApiError>[0] };
  try {
    reply = message.json();
  } catch (error) {
    return { ok: false, error: new Error('a JetStream reply that is not JSON', { cause: error }) };
  }
  if (reply.error !== undefined) return { ok: false, error: new JetStreamApiError(reply.error) };
  if (typeof reply.stream !== 'string' || reply.stream === '') {
    return { ok: false, error: new Error('a JetStream reply without a stream: not a PubAck') };
  }
  return { ok: true, ack: { ...reply, duplicate: reply.duplicate ?? false } };
}
