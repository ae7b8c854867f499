import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import type { Db } from '../db/db.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { describeError } from '../messaging/describe-error.ts';
import { BrokenCircuitError, IsolatedCircuitError, type CircuitBreakerPolicy } from '../resilience/index.ts';
import { ServiceBase } from '../service/index.ts';
import { systemClock, type TimerHandle } from '../time/index.ts';
import {
  breakerAllows,
  isPermanentPublishError,
  positiveInteger,
  relayPolicy,
  type RelayPolicyOptions,
  type RelayPublishEvents,
} from './relay-policy.ts';
import { defaultWalOutboxPrefix } from './wal-outbox.ts';
import { decodeWalOutboxRecord, isNewerWalOutboxRecord } from './wal-outbox-record.ts';
import { ensureWalOutboxSlot, walOutboxSlotNames, type WalOutboxSlotOptions } from './wal-outbox-slot.ts';
import { formatLsn, parseLsn } from './lsn.ts';
import {
  holdWalOutboxMessages,
  keysWithUnpublishedRows,
  parkWalOutboxMessage,
} from './wal-outbox-parking.ts';
import { ReceivedQueue, type Received, type Send } from './wal-outbox-received.ts';

export interface WalOutboxRelayOptions extends WalOutboxSlotOptions, RelayPolicyOptions {
  /**
   * The server to stream from, as a connection string: the same server `db` reaches (its user
   * needs the REPLICATION attribute, and pg_hba.conf must allow it a `replication` connection).
   */
  connectionString: string;
  /** The logical-message prefix `addToWalOutbox` wrote under. Default `keel_outbox`. */
  prefix?: string;
  /** Most messages per publish call; a batch ends on a transaction's boundary when it can. Default 500. */
  batchSize?: number;
  /**
   * Messages received and not yet published above which the relay stops reading the stream
   * until the publisher catches up (the server then holds the rest). Default 10 000.
   */
  maxBuffered?: number;
  /** Wait before streaming again after the stream broke, or while another relay holds the slot. Default 1 000 ms. */
  reconnectMs?: number;
}

/** `published` comes once the broker accepted (the position is confirmed to the server after). */
export interface WalOutboxRelayEvents extends RelayPublishEvents {
  /** Another relay streams from the slot: this one waits and tries again every `reconnectMs`. */
  standby: { slotName: string };
  /** This relay now streams from the slot. */
  streaming: { slotName: string };
}

/**
 * How often the relay reports its position while streaming, whatever else happens: also while it
 * has stopped reading the socket (a full queue), when it sees no keepalive to answer, so the
 * server's wal_sender_timeout (60 s by default) never ends a stream that is only waiting.
 */
const statusIntervalMs = 10_000;

/** While batches follow each other, the relay confirms its position at most this often. */
const confirmEveryMs = 50;

/**
 * How long a stopping relay lets the server end the stream after its last confirmation (the
 * server first sends what it has in flight, which the relay reads and drops) before it closes
 * the connection anyway.
 */
const endStreamTimeoutMs = 5_000;

/**
 * Publishes what `addToWalOutbox` wrote, by logical decoding: it streams the WAL outbox's
 * replication slot (pgoutput, logical messages only) and hands each committed transaction's
 * messages to any `Publisher`, in commit order, then confirms the position to the server.
 *
 * Delivery is at-least-once: the server keeps the slot's confirmed position, and a relay that
 * dies between a publish and its confirmation gets those transactions again. Nothing is claimed
 * or marked, and nothing is deleted afterwards: the server recycles WAL the slot no longer holds.
 *
 * Order: messages go out in commit order — per destination, and so per key — one batch at a
 * time. A message whose publish keeps failing holds back everything after it (order first) until
 * it is published or parked: a message the broker refuses for what it is (a permanent error), or
 * that failed `maxAttempts` times while the breaker was closed, is moved to the table outbox as a
 * parked row (`keel outbox status`, `keel outbox retry`, which hands it to an `OutboxRelay`),
 * and the stream moves on. Later messages of its key — of any key with a row in the table outbox
 * not yet published — go into the table behind that row, so the table relay publishes them in
 * order after it; once the key's table rows are published, its messages go straight out again.
 * Run an `OutboxRelay` beside this one for those rows.
 *
 * Several relays: a slot streams to one connection at a time, so extra relays stand by and take
 * over within `reconnectMs` of the active one stopping.
 */
export class WalOutboxRelay extends ServiceBase<WalOutboxRelayEvents> {
  readonly #db: Db;
  readonly #publisher: Publisher;
  readonly #connectionString: string;
  readonly #slotName: string;
  readonly #publicationName: string;
  readonly #prefix: string;
  readonly #batchSize: number;
  readonly #maxBuffered: number;
  readonly #maxAttempts: number;
  readonly #retryDelay: (attempt: number) => number;
  readonly #reconnectMs: number;
  /** The breaker every publish goes through. */
  readonly breaker: CircuitBreakerPolicy;

  #stream: LogicalReplicationService | undefined;
  /** The current stream is streaming (between the server's start and the end of the command). */
  #copying = false;
  #streamLoop: Promise<void> | undefined;
  #publishLoop: Promise<void> | undefined;
  #stopping = false;
  /** Stopping, a publish failed: the rest of the batch in hand is given up too. */
  #givingUp = false;
  #standby = false;
  /** The current stream's transactions, received and not yet taken for publishing. */
  #queue = new ReceivedQueue();
  #paused = false;
  /** A record this relay cannot read was met: nothing more is taken from this stream. */
  #halted = false;
  /** The transaction being received (between its begin and its commit). */
  #current: Received | undefined;
  /** Everything up to here was published (or held nothing of ours). */
  #published = 0n;
  /** Everything up to here was taken for publishing: sent again after a reconnect, it is skipped. */
  #taken = 0n;
  /** The position last confirmed to the server, and when. */
  #confirmed = 0n;
  #confirmedAt = 0;
  #confirmTimer: TimerHandle | undefined;
  /**
   * (destination, key) pairs with a row in the table outbox not yet published — a message this
   * relay parked, say: later messages of those keys go into the table behind it, not to the
   * broker, so a key's order holds across a parked message.
   */
  readonly #heldKeys = new Set<string>();
  /** Ends the publisher's wait: new messages arrived, or the relay stops. */
  #wakeUp: (() => void) | undefined;
  #stopSleeping: (() => void) | undefined;

  constructor(db: Db, publisher: Publisher, options: WalOutboxRelayOptions) {
    super(options?.name ?? 'wal-outbox-relay', options?.clock ?? systemClock);
    if (typeof publisher?.publish !== 'function') {
      throw new InvalidArgumentError('publisher', 'a Publisher', publisher);
    }
    if (typeof options?.connectionString !== 'string' || options.connectionString.length === 0) {
      throw new InvalidArgumentError(
        'connectionString',
        'a PostgreSQL connection string',
        options?.connectionString,
      );
    }
    this.#db = db;
    this.#publisher = publisher;
    this.#connectionString = options.connectionString;
    ({ slotName: this.#slotName, publicationName: this.#publicationName } = walOutboxSlotNames(options));
    this.#prefix = options.prefix ?? defaultWalOutboxPrefix;
    if (typeof this.#prefix !== 'string' || this.#prefix.length === 0) {
      throw new InvalidArgumentError('prefix', 'a non-empty string', this.#prefix);
    }
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 500);
    this.#maxBuffered = positiveInteger('maxBuffered', options.maxBuffered ?? 10_000);
    this.#reconnectMs = positiveInteger('reconnectMs', options.reconnectMs ?? 1000);
    ({
      maxAttempts: this.#maxAttempts,
      retryDelay: this.#retryDelay,
      breaker: this.breaker,
    } = relayPolicy(options, this.clock));
  }

  /** Messages received from the stream and not yet published. */
  get buffered(): number {
    return this.#queue.held;
  }

  protected override async onStart(): Promise<void> {
    const { rows } = await this.#db.query<{ table: string | null }>(
      `SELECT to_regclass('keel_outbox')::text AS table`,
    );
    if (rows[0]?.table == null) {
      // Parked messages, and the later messages of their keys, go into the table outbox.
      throw new KeelError(
        'KEEL_SCHEMA_MISSING',
        `the WAL outbox relay needs keel_outbox in schema ${this.#db.schema}: run outboxMigrations first`,
      );
    }
    await ensureWalOutboxSlot(this.#db, { slotName: this.#slotName, publicationName: this.#publicationName });
    for (const { destination, key } of await keysWithUnpublishedRows(this.#db)) {
      this.#heldKeys.add(heldKey(destination, key));
    }
    this.#streamLoop = this.#runStream();
    this.#publishLoop = this.#runPublisher();
  }

  protected override async onStop(): Promise<void> {
    // The batch being published finishes and is confirmed; what is still queued stays in the
    // slot, for the next relay.
    this.#stopping = true;
    this.#wake();
    this.#stopSleeping?.();
    await this.#publishLoop;
    // A stream not yet started is ended by its start; one between streams does not start.
    if (this.#copying) this.#endCopy();
    let timer: TimerHandle | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = this.clock.setTimeout(() => resolve('expired'), endStreamTimeoutMs);
    });
    const ended = await Promise.race([this.#streamLoop, expired]);
    if (timer !== undefined) this.clock.clearTimeout(timer);
    if (ended === 'expired') {
      await this.#stream?.stop();
      await this.#streamLoop;
    }
  }

  /**
   * Ends the stream the way the protocol means it to: the relay says it is done (CopyDone) after
   * its last confirmation, and the server reads every reply before it, releases the slot and
   * ends the command. The client library's stop closes the socket mid-command instead, with data
   * still unread, which resets the connection: a server busy sending then never read the last
   * confirmation, and the next relay published again what this one had.
   */
  #endCopy(): void {
    const connection = this.#connection();
    if (connection === undefined) return;
    // What the server still sends is read and dropped, so that it can finish sending.
    connection.stream.resume();
    connection.endCopyFrom();
  }

  /** Streams from the slot until stopped, starting again after every break. */
  async #runStream(): Promise<void> {
    while (!this.#stopping) {
      const stream = new LogicalReplicationService(
        { connectionString: this.#connectionString },
        // Confirmations are the relay's alone: only what was published is ever confirmed.
        { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
      );
      this.#stream = stream;
      stream.on('data', (_lsn: string, log: Pgoutput.Message) => this.#onData(log));
      stream.on('heartbeat', (lsn: string, _time: number, replyRequested: boolean) =>
        this.#onKeepalive(lsn, replyRequested),
      );
      // Every failure also ends subscribe(), which reports it below.
      stream.on('error', () => undefined);
      stream.on('start', () => {
        this.#copying = true;
        this.#standby = false;
        // Confirms what an earlier stream published but could not confirm.
        if (this.#published > 0n) this.#confirm(true);
        if (this.#stopping) this.#endCopy();
        else this.events.emit('streaming', { slotName: this.#slotName });
      });
      let keepReplying: TimerHandle | undefined;
      const replyEvery = (): void => {
        keepReplying = this.clock.setTimeout(() => {
          this.#confirm(true);
          replyEvery();
        }, statusIntervalMs);
      };
      try {
        await this.#catchUpWithSlot();
        if (!this.#stopping) {
          replyEvery();
          // Starting at 0/0 means: at the slot's confirmed position.
          await stream.subscribe(
            new PgoutputPlugin({
              protoVersion: 1,
              publicationNames: [this.#publicationName],
              messages: true,
            }),
            this.#slotName,
            '0/0',
          );
        }
      } catch (error) {
        if (!this.#stopping) this.#reportStreamError(error);
      }
      this.#copying = false;
      if (keepReplying !== undefined) this.clock.clearTimeout(keepReplying);
      await stream.stop().catch(() => undefined);
      // What was received and not yet taken comes again on the next stream (from the confirmed
      // position); what is being published now is skipped then by its position.
      this.#queue = new ReceivedQueue();
      this.#current = undefined;
      this.#paused = false;
      this.#halted = false;
      if (!this.#stopping) await this.#sleep(this.#reconnectMs);
    }
  }

  /**
   * Everything before the slot's confirmed position was published (by this relay or another), so
   * the relay starts from there: a status reply then always names a real position.
   */
  async #catchUpWithSlot(): Promise<void> {
    const { rows } = await this.#db.query<{ confirmed: string | null }>(
      `SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`,
      [this.#slotName],
    );
    const confirmed = rows[0]?.confirmed;
    if (confirmed == null) return;
    const position = parseLsn(confirmed);
    if (position > this.#published) this.#published = position;
    if (position > this.#taken) this.#taken = position;
    if (position > this.#confirmed) this.#confirmed = position;
  }

  #reportStreamError(error: unknown): void {
    // 55006 object_in_use: another relay streams from the slot.
    if ((error as { code?: unknown } | null)?.code === '55006') {
      if (!this.#standby) this.events.emit('standby', { slotName: this.#slotName });
      this.#standby = true;
      return;
    }
    this.events.emit('error', { error, during: 'stream' });
  }

  /** Stops taking anything from this stream (which then ends), so nothing past here is confirmed. */
  #halt(): void {
    this.#halted = true;
    this.#current = undefined;
    void this.#stream?.stop().catch(() => undefined);
  }

  #onData(log: Pgoutput.Message): void {
    // Stopping: nothing more is published, so what the server still sends is dropped.
    if (this.#halted || this.#stopping) return;
    switch (log.tag) {
      case 'begin':
        this.#current = { sends: [], count: 0, lsn: 0n };
        return;
      case 'message': {
        if (log.prefix !== this.#prefix || !log.transactional || this.#current === undefined) return;
        let record;
        try {
          record = decodeWalOutboxRecord(log.content);
        } catch (error) {
          this.events.emit('error', { error, during: 'decode' });
          // A newer keel's record: skipping it would lose it. The relay goes no further (nothing
          // from here on is queued or confirmed) and streams again after reconnectMs, until it
          // is upgraded. Anything else under the prefix is not keel's: it has no id to publish
          // or park by, and is passed over.
          if (isNewerWalOutboxRecord(error)) this.#halt();
          return;
        }
        const sends = this.#current.sends;
        const last = sends.at(-1);
        if (last?.destination === record.destination) last.messages.push(...record.messages);
        else sends.push({ destination: record.destination, messages: record.messages });
        this.#current.count += record.messages.length;
        return;
      }
      case 'commit': {
        const received = this.#current ?? { sends: [], count: 0, lsn: 0n };
        this.#current = undefined;
        received.lsn = parseLsn(log.commitEndLsn ?? '0/0');
        // Sent again after a reconnect, and already published or being published: skipped.
        if (received.lsn <= this.#taken) return;
        this.#enqueue(received);
        return;
      }
      default:
        return;
    }
  }

  /**
   * The server has sent everything before `lsn`: all of it is in the queue, so `lsn` may be
   * confirmed once the queue ahead of it is published — which lets the slot release WAL that
   * held nothing of ours, instead of holding it until the next outbox message.
   */
  #onKeepalive(lsn: string, replyRequested: boolean): void {
    if (this.#halted) return;
    const position = parseLsn(lsn);
    if (position > this.#taken && !this.#stopping) this.#enqueue({ sends: [], count: 0, lsn: position });
    if (replyRequested) this.#confirm(true);
  }

  #enqueue(received: Received): void {
    this.#queue.push(received);
    if (this.#queue.held >= this.#maxBuffered && !this.#paused) {
      this.#paused = true;
      this.#socket()?.pause();
    }
    this.#wake();
  }

  async #runPublisher(): Promise<void> {
    while (!this.#stopping) {
      const queue = this.#queue;
      const batch = queue.take(this.#batchSize);
      if (batch === undefined) {
        await this.#pause(60_000);
        continue;
      }
      if (batch.lsn > this.#taken) this.#taken = batch.lsn;
      const accepted = await this.#publishBatch(batch.sends);
      if (accepted === undefined) break;
      batch.release();
      if (this.#paused && queue === this.#queue && queue.held <= this.#maxBuffered / 2) {
        this.#paused = false;
        this.#socket()?.resume();
      }
      if (batch.lsn > this.#published) this.#published = batch.lsn;
      this.#confirmSoon();
      for (const send of accepted) this.events.emit('published', send);
    }
    // Stopping: what was published is confirmed before the stream closes.
    if (this.#confirmTimer !== undefined) this.clock.clearTimeout(this.#confirmTimer);
    this.#confirmTimer = undefined;
    this.#confirm(false);
  }

  /**
   * Publishes each destination's messages in order, in calls of `batchSize`; returns what the
   * broker accepted (parked messages left out), or undefined when stopped first.
   */
  async #publishBatch(sends: readonly Send[]): Promise<Send[] | undefined> {
    const accepted: Send[] = [];
    for (const { destination, messages } of sends) {
      const taken: Envelope[] = [];
      for (let start = 0; start < messages.length; start += this.#batchSize) {
        // Checked per call: a message parked in the call before holds its key for the rest.
        const chunk = await this.#holdBackHeld(destination, messages.slice(start, start + this.#batchSize));
        if (chunk === undefined || !(await this.#deliver(destination, chunk, taken))) return undefined;
      }
      if (taken.length > 0) accepted.push({ destination, messages: taken });
    }
    return accepted;
  }

  /**
   * Writes the messages of held keys into the table outbox, behind the rows they wait for, and
   * returns the others; a key whose table rows have all been published since is released first.
   * Undefined when stopped before the write succeeded.
   */
  async #holdBackHeld(destination: string, messages: Envelope[]): Promise<Envelope[] | undefined> {
    if (this.#heldKeys.size === 0) return messages;
    const keys = new Set<string>();
    for (const m of messages)
      if (m.key !== null && this.#heldKeys.has(heldKey(destination, m.key))) keys.add(m.key);
    if (keys.size === 0) return messages;
    const pairs = [...keys].map((key) => ({ destination, key }));
    const still = await this.#retryingDb(() => keysWithUnpublishedRows(this.#db, pairs));
    if (still === undefined) return undefined;
    const waiting = new Set(still.value.map((p) => p.key));
    for (const key of keys) if (!waiting.has(key)) this.#heldKeys.delete(heldKey(destination, key));
    const held = messages.filter((m) => m.key !== null && waiting.has(m.key));
    if (held.length === 0) return messages;
    if ((await this.#retryingDb(() => holdWalOutboxMessages(this.#db, destination, held))) === undefined) {
      return undefined;
    }
    return messages.filter((m) => m.key === null || !waiting.has(m.key));
  }

  /**
   * Runs a statement until it succeeds (errors reported, retried after `retryDelay`) and wraps
   * its result; undefined only when the relay stopped first.
   */
  async #retryingDb<T>(statement: () => Promise<T>): Promise<{ value: T } | undefined> {
    for (let tries = 1; ; tries++) {
      try {
        return { value: await statement() };
      } catch (error) {
        this.events.emit('error', { error, during: 'hold' });
        if (this.#stopping) return undefined;
        await this.#pause(this.#retryDelay(tries));
      }
    }
  }

  /**
   * Publishes `messages` until the broker takes them: retried whole while the failure is one a
   * retry can fix; split into single messages once the broker refuses the batch for what is in
   * it, or after `maxAttempts` charged failures, so that only the message at fault is parked.
   */
  async #deliver(destination: string, messages: Envelope[], accepted: Envelope[]): Promise<boolean> {
    if (messages.length === 0) return true;
    let attempts = 0;
    for (let tries = 0; ; tries++) {
      // Stopping, the batch in hand is still published, call by call, while the broker takes it:
      // it is confirmed whole, so none of a transaction larger than a call comes again. The first
      // failure gives up the rest, which the next relay gets from the slot.
      if (this.#stopping && (tries > 0 || this.#givingUp)) {
        this.#givingUp = true;
        return false;
      }
      if (!breakerAllows(this.breaker)) {
        await this.#pause(this.#breakerWaitMs());
        continue;
      }
      const closedBefore = this.breaker.state.status === 'closed';
      try {
        await this.breaker.execute(() => this.#publisher.publish(destination, messages));
        for (const message of messages) accepted.push(message);
        return true;
      } catch (error) {
        if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) continue;
        const permanent = isPermanentPublishError(error);
        const charged = closedBefore || permanent;
        this.events.emit('publish-failed', { destination, messages, error, charged });
        if (charged) attempts++;
        if (permanent || attempts >= this.#maxAttempts) {
          if (messages.length === 1) return this.#park(destination, messages[0]!, error, attempts);
          for (const message of messages) {
            // A message parked just before may hold this one's key: it waits behind it.
            if (message.key !== null && this.#heldKeys.has(heldKey(destination, message.key))) {
              const held = await this.#retryingDb(() =>
                holdWalOutboxMessages(this.#db, destination, [message]),
              );
              if (held === undefined) return false;
              continue;
            }
            if (!(await this.#deliver(destination, [message], accepted))) return false;
          }
          return true;
        }
        await this.#pause(this.#retryDelay(Math.max(1, attempts)));
      }
    }
  }

  /** Moves a message to the table outbox as a parked row; retried until it is written. */
  async #park(destination: string, message: Envelope, error: unknown, attempts: number): Promise<boolean> {
    for (let tries = 1; ; tries++) {
      try {
        await parkWalOutboxMessage(this.#db, destination, message, {
          attempts,
          error: describeError(error),
          now: new Date(this.clock.now()),
        });
        if (message.key !== null) this.#heldKeys.add(heldKey(destination, message.key));
        this.events.emit('parked', { message, error });
        return true;
      } catch (parkError) {
        this.events.emit('error', { error: parkError, during: 'park' });
        if (this.#stopping) return false;
        await this.#pause(this.#retryDelay(tries));
      }
    }
  }

  /**
   * Each confirmation is a write to the socket: when small transactions stream in one at a time,
   * confirming every batch cost more than decoding it. So the relay confirms at most every
   * `confirmEveryMs`, and once more that long after the last batch: a crash repeats at most that
   * much, and a stop confirms everything.
   */
  #confirmSoon(): void {
    const wait = this.#confirmedAt + confirmEveryMs - this.clock.now();
    if (wait <= 0) {
      this.#confirm(false);
      return;
    }
    this.#confirmTimer ??= this.clock.setTimeout(() => {
      this.#confirmTimer = undefined;
      this.#confirm(false);
    }, wait);
  }

  /** Sends the published position to the server; `always`: also when it did not move (a reply). */
  #confirm(always: boolean): void {
    if (!always && this.#published <= this.#confirmed) return;
    const position = this.#published > this.#confirmed ? this.#published : this.#confirmed;
    if (position === 0n) return;
    this.#confirmed = position;
    this.#confirmedAt = this.clock.now();
    // pg-logical-replication sends the position it is given plus one. The server skips every
    // transaction whose commit record starts before the confirmed position, and the next commit
    // record may start exactly where this one ended: confirming end + 1 lost it (found by the
    // chaos test). So the relay hands over one less, and the server gets the position itself.
    this.#stream?.acknowledge(formatLsn(position - 1n)).catch(() => undefined);
  }

  /**
   * The replication stream's pg connection: its socket, paused while the queue is full, and its
   * CopyDone. pg-logical-replication keeps it private (and pauses the same socket itself).
   */
  #connection(): ReplicationConnection | undefined {
    return (
      (this.#stream as unknown as { _connection?: ReplicationConnection | null } | undefined)?._connection ??
      undefined
    );
  }

  /** The replication connection's socket, to stop reading it while the queue is full. */
  #socket(): ReplicationConnection['stream'] | undefined {
    return this.#connection()?.stream;
  }

  #breakerWaitMs(): number {
    const state = this.breaker.state;
    if (state.status !== 'open') return this.#reconnectMs;
    return Math.max(1, state.until - this.clock.now());
  }

  #wake(): void {
    this.#wakeUp?.();
  }

  /** The stream's wait before it starts again; stopping ends it early. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.#stopSleeping = undefined;
        resolve();
      }, ms);
      this.#stopSleeping = () => {
        this.clock.clearTimeout(timer);
        resolve();
      };
    });
  }

  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined = undefined;
      const done = (): void => {
        if (this.#wakeUp === done) this.#wakeUp = undefined;
        if (timer !== undefined) this.clock.clearTimeout(timer);
        resolve();
      };
      this.#wakeUp = done;
      timer = this.clock.setTimeout(done, ms);
      if (this.#stopping) done();
    });
  }
}

/** The parts of node-postgres' connection the relay uses. */
interface ReplicationConnection {
  stream: { pause(): void; resume(): void };
  endCopyFrom(): void;
}

/** A (destination, key) pair as one string, for the set of held keys. */
function heldKey(destination: string, key: string): string {
  return `${destination}\u0000${key}`;
}
