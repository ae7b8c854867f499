import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type PubAck,
} from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { KeelError } from '../../../errors/index.ts';
import type { TimerHandle } from '../../../time/index.ts';
import type { ConnectionLoss } from '../../delivery-source.ts';
import type { Encoded } from './codec.ts';
import { ConnectionWatch } from './connection-watch.ts';
import type { Names } from './names.ts';
import { PubAckInbox, type JetStreamPublish, type PublishOutcome } from './pub-acks.ts';
import type { Resolved } from './nats-options.ts';

export interface Handles {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** Where publishes' PubAcks come back. */
  readonly pubAcks: PubAckInbox;
}

/**
 * What a broker and its sources share: one connection, the streams and consumers declared on
 * it, and the failure times seen in this process.
 */
export class JetStreamContext {
  readonly o: Resolved;
  readonly names: Names;
  /** When a message (by stream and sequence) first failed here: a NAK carries no headers. */
  readonly firstFailures = new FirstFailures(10_000);
  readonly #given: NatsConnection | undefined;
  #handles: Promise<Handles> | undefined;
  readonly #streams = new Map<string, Promise<string>>();
  /** The connection's state, from its status events, once it is open. */
  #watch: ConnectionWatch | undefined;
  #closed = false;

  constructor(o: Resolved, names: Names, given: NatsConnection | undefined) {
    this.o = o;
    this.names = names;
    this.#given = given;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The connection is down and the client reconnecting (see `ConnectionWatch`); undefined while up. */
  connectionLost(): ConnectionLoss | undefined {
    return this.#watch?.loss;
  }

  /** Every stream this context declared so far. */
  declaredStreams(): string[] {
    return [...this.#streams.keys()].map((destination) => this.names.stream(destination));
  }

  /** The connection, opened on first use. A failed first connect is forgotten, so the next call tries again. */
  handles(): Promise<Handles> {
    if (this.#closed) {
      return Promise.reject(new KeelError('KEEL_SERVICE_STATE', 'the NATS JetStream broker is closed'));
    }
    this.#handles ??= this.#open();
    return this.#handles;
  }

  async #open(): Promise<Handles> {
    try {
      const nc =
        this.#given ??
        (await connect({
          servers: this.o.servers,
          name: this.o.name,
          // Reconnect for as long as the broker lives: a server restart must not end consumers.
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          reconnectJitter: 250,
          timeout: 5000,
          // Without this every request (a publish, an ack) builds two Errors for their stack
          // traces, a quarter of the CPU time at full load; a failure still names its subject.
          noAsyncTraces: true,
        }));
      const handles = {
        nc,
        js: jetstream(nc),
        jsm: await jetstreamManager(nc, { checkAPI: false }),
        pubAcks: new PubAckInbox(nc, this.o.clock),
      };
      this.#watch = new ConnectionWatch(nc, this.o.clock);
      if (this.#closed) this.#watch.stop();
      return handles;
    } catch (error) {
      this.#handles = undefined;
      throw new KeelError('KEEL_BROKER_UNAVAILABLE', `cannot reach NATS at ${String(this.o.servers)}`, {
        cause: error,
      });
    }
  }

  /**
   * Declares the destination's stream once per context, idempotently: an existing stream with the
   * same subject is used as it is (its limits are not changed). Returns the stream's name.
   */
  ensureStream(destination: string): Promise<string> {
    let declared = this.#streams.get(destination);
    if (declared === undefined) {
      declared = this.#declareStream(destination);
      this.#streams.set(destination, declared);
      declared.catch(() => this.#streams.delete(destination));
    }
    return declared;
  }

  /** Declares the stream again on next use: it may have been deleted. */
  forgetStream(destination: string): void {
    this.#streams.delete(destination);
  }

  async #declareStream(destination: string): Promise<string> {
    const { jsm } = await this.handles();
    const name = this.names.stream(destination);
    const subject = this.names.subject(destination);
    try {
      await jsm.streams.add({
        name,
        subjects: [subject],
        retention: RetentionPolicy.Limits,
        storage: this.o.storage === 'file' ? StorageType.File : StorageType.Memory,
        num_replicas: this.o.replicas,
        max_msgs: this.o.maxMessages,
        max_bytes: this.o.maxBytes,
        max_age: nanos(this.o.maxAgeMs),
        duplicate_window: nanos(this.o.duplicateWindowMs),
        discard: DiscardPolicy.Old,
      });
    } catch (error) {
      // Declared before with other limits (another process, another version): use it as it is,
      // provided it holds this destination's subject.
      const info = await jsm.streams.info(name).catch(() => undefined);
      if (info === undefined) throw error;
      if (!info.config.subjects.includes(subject)) {
        throw new KeelError(
          'KEEL_BROKER_UNAVAILABLE',
          `stream ${name} exists but does not hold subject ${subject}`,
          { cause: error, details: { stream: name, subjects: info.config.subjects } },
        );
      }
    }
    return name;
  }

  /** The group's durable pull consumer on the destination's stream, created when missing. */
  async ensureConsumer(destination: string, group: string, leaseMs: number): Promise<Consumer> {
    const stream = await this.ensureStream(destination);
    const { js, jsm } = await this.handles();
    try {
      await jsm.consumers.add(stream, {
        durable_name: group,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(leaseMs),
        deliver_policy: this.o.groupStart === 'earliest' ? DeliverPolicy.All : DeliverPolicy.New,
        // Attempts are counted by the runtime from the delivery count: it dead-letters. A server
        // that gave up by itself would leave the message in the stream, delivered to no one.
        max_deliver: -1,
        // The runtime bounds what each consumer holds; this bounds the group as a whole.
        max_ack_pending: 20_000,
      });
    } catch (error) {
      // Exists already: join it. A shorter lease than ours is raised to ours, so the runtime's
      // renewals (every third of our lease) come in time for every member; a longer one stays.
      const info = await jsm.consumers.info(stream, group).catch(() => undefined);
      if (info === undefined) throw error;
      if (info.config.ack_wait !== undefined && info.config.ack_wait < nanos(leaseMs)) {
        await jsm.consumers.update(stream, group, { ack_wait: nanos(leaseMs) });
      }
    }
    return js.consumers.get(stream, group);
  }

  /** Publishes one message to a destination's stream and waits for JetStream's acknowledgement. */
  async publish(destination: string, encoded: Encoded, msgID?: string): Promise<PubAck> {
    const [outcome] = await this.publishAll(destination, [
      { encoded, ...(msgID === undefined ? {} : { msgID }) },
    ]);
    if (!outcome!.ok) throw outcome!.error;
    return outcome!.ack;
  }

  /**
   * Publishes messages to a destination's stream, all at once, and resolves with each one's
   * outcome once JetStream answered each (or `publishTimeoutMs` passed).
   */
  async publishAll(destination: string, messages: readonly JetStreamPublish[]): Promise<PublishOutcome[]> {
    const stream = await this.ensureStream(destination);
    const { pubAcks } = await this.handles();
    return pubAcks.publishAll(this.names.subject(destination), stream, messages, this.o.publishTimeoutMs);
  }

  /**
   * Sends an acknowledgement (`-NAK {...}`, `+TERM`, a single `+ACK`) and waits for the server's
   * reply: the client's `nak()` and `term()` are fire-and-forget.
   */
  async settle(message: JsMsg, body: string): Promise<void> {
    const { nc } = await this.handles();
    await nc.request(replyOf(message), body, { timeout: this.o.publishTimeoutMs });
  }

  /**
   * Acks every message, then waits until the server has read them (a PING sent after them came
   * back): one round trip for the batch instead of one reply per message. JetStream applies acks
   * to the consumer's state and writes it to its store asynchronously, whichever is used.
   */
  async ackAll(messages: readonly JsMsg[]): Promise<void> {
    const { nc } = await this.handles();
    for (const message of messages) message.ack();
    await this.#flush(nc);
  }

  /** `+WPI` for every message (each one's `ack_wait` starts again), then one flush. */
  async progress(messages: readonly JsMsg[]): Promise<void> {
    const { nc } = await this.handles();
    for (const message of messages) message.working();
    await this.#flush(nc);
  }

  /** A flush waits for a reconnect without end: bound it, what it covers is lost with the connection. */
  async #flush(nc: NatsConnection): Promise<void> {
    let timer: TimerHandle | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.o.clock.setTimeout(
        () =>
          reject(new KeelError('KEEL_TIMEOUT', `no reply to a flush within ${this.o.publishTimeoutMs} ms`)),
        this.o.publishTimeoutMs,
      );
    });
    try {
      await Promise.race([nc.flush(), timeout]);
    } finally {
      this.o.clock.clearTimeout(timer!);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.stop();
    const handles = await this.#handles?.catch(() => undefined);
    this.#handles = undefined;
    if (handles === undefined) return;
    handles.pubAcks.close();
    if (this.#given !== undefined) return;
    await handles.nc.drain().catch(async () => handles.nc.close());
  }
}

/**
 * The ack subject of a delivered message. The client's `JsMsg` type hides it (its `ackAck` only
 * confirms `+ACK`), while every JetStream acknowledgement, NAK and TERM included, is a message
 * to it that the server answers when given a reply subject.
 */
function replyOf(message: JsMsg): string {
  const reply = (message as { reply?: unknown }).reply;
  if (typeof reply !== 'string' || reply.length === 0) {
    throw new KeelError('KEEL_INTERNAL', `JetStream message ${message.seq} has no ack subject`);
  }
  return reply;
}

/** A bounded memo, oldest forgotten first: failure times of messages still being retried. */
export class FirstFailures {
  readonly #max: number;
  readonly #times = new Map<string, string>();

  constructor(max: number) {
    this.#max = max;
  }

  /** The first failure time of `key`, recording `now` when there is none. */
  note(key: string, now: string): string {
    const known = this.#times.get(key);
    if (known !== undefined) return known;
    if (this.#times.size >= this.#max) this.#times.delete(this.#times.keys().next().value!);
    this.#times.set(key, now);
    return now;
  }

  get(key: string): string | undefined {
    return this.#times.get(key);
  }

  delete(key: string): void {
    this.#times.delete(key);
  }
}
