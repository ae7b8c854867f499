// The WAL outbox relay's replication stream: the slot streamed (pgoutput, logical messages only)
// over one connection at a time, started again after every break and while another relay holds
// the slot, and ended on stop the way the protocol means it to. What it delivers goes to its
// intake (wal-outbox-relay-intake.ts); what it confirms, SlotPositions decides
// (wal-outbox-relay-positions.ts).
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import type { Db } from '../db/db.ts';
import { KeelError } from '../errors/index.ts';
import type { Clock, TimerHandle } from '../time/index.ts';
import { parseLsn } from './lsn.ts';
import type { RelayHealth } from './relay-health.ts';
import { RelayWaits } from './relay-waits.ts';
import type { WalOutboxRelayEmitter } from './wal-outbox-relay-events.ts';
import { StreamIntake, type IntakeSource } from './wal-outbox-relay-intake.ts';
import { StreamLiveness } from './wal-outbox-relay-liveness.ts';
import type { ResolvedWalOutboxRelayOptions } from './wal-outbox-relay-options.ts';
import type { SlotPositions } from './wal-outbox-relay-positions.ts';

/**
 * How often, at most, the relay reports its position while streaming, whatever else happens: also
 * while it has stopped reading the socket (a full queue), when it sees no keepalive to answer, so
 * the server's wal_sender_timeout (60 s by default) never ends a stream that is only waiting. Each
 * report asks the server to answer (StreamLiveness); a third of `receiveTimeoutMs` when shorter.
 */
const statusIntervalMs = 10_000;

/**
 * How long a stopping relay lets the server end the stream after its last confirmation (the
 * server first sends what it has in flight, which the relay reads and drops) before it closes
 * the connection anyway.
 */
const endStreamTimeoutMs = 5_000;

export interface ReplicationStreamOptions extends Pick<
  ResolvedWalOutboxRelayOptions,
  | 'connectionString'
  | 'slotName'
  | 'publicationName'
  | 'prefix'
  | 'maxBuffered'
  | 'reconnectMs'
  | 'receiveTimeoutMs'
> {
  /** Reads the slot's confirmed position before each stream. */
  db: Db;
  clock: Clock;
  positions: SlotPositions;
  /** The relay's: stopping, no stream starts again; its wake-ups tell the publisher of new messages. */
  waits: RelayWaits;
  events: WalOutboxRelayEmitter;
  /**
   * Where the stream's outcomes go, for the relay's `health()`: `replication` for the stream
   * itself, `database` for the read of the slot's position before each stream.
   */
  health: RelayHealth<'replication' | 'database'>;
}

export class ReplicationStream implements IntakeSource {
  /** What the stream delivered, for the publisher. */
  readonly intake: StreamIntake;
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #connectionString: string;
  readonly #slotName: string;
  readonly #publicationName: string;
  readonly #reconnectMs: number;
  readonly #positions: SlotPositions;
  readonly #waits: RelayWaits;
  readonly #events: WalOutboxRelayEmitter;
  readonly #health: RelayHealth<'replication' | 'database'>;
  /** The wait before streaming again; stopping ends it early. */
  readonly #reconnectWait: RelayWaits;
  /** Whether the server still answers the stream of the moment. */
  readonly #liveness: StreamLiveness;
  readonly #receiveTimeoutMs: number;
  /** How often the relay reports its position (and asks for an answer) while streaming. */
  readonly #replyEveryMs: number;
  /** The stream of the moment was ended for its silence: what it failed with. */
  #silence: KeelError | undefined;
  #service: LogicalReplicationService | undefined;
  /** The current stream is streaming (between the server's start and the end of the command). */
  #copying = false;
  #standby = false;
  #walsender: number | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: ReplicationStreamOptions) {
    this.#db = options.db;
    this.#clock = options.clock;
    this.#connectionString = options.connectionString;
    this.#slotName = options.slotName;
    this.#publicationName = options.publicationName;
    this.#reconnectMs = options.reconnectMs;
    this.#positions = options.positions;
    this.#waits = options.waits;
    this.#events = options.events;
    this.#health = options.health;
    this.#reconnectWait = new RelayWaits(options.clock);
    this.#receiveTimeoutMs = options.receiveTimeoutMs;
    this.#liveness = new StreamLiveness(options.clock, options.receiveTimeoutMs);
    this.#replyEveryMs = Math.max(1, Math.min(statusIntervalMs, Math.floor(options.receiveTimeoutMs / 3)));
    this.intake = new StreamIntake({ ...options, source: this });
  }

  /** Streams from the slot until stopped, starting again after every break. */
  start(): void {
    this.#loop = this.#run();
  }

  /** The relay stops: a wait to stream again ends now (the loop then ends). */
  stopWaiting(): void {
    this.#reconnectWait.stop();
  }

  /** After the relay's last confirmation: ends the stream, closing the connection if it takes too long. */
  async end(): Promise<void> {
    // A stream not yet started is ended by its start; one between streams does not start.
    if (this.#copying) this.#endCopy();
    let timer: TimerHandle | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = this.#clock.setTimeout(() => resolve('expired'), endStreamTimeoutMs);
    });
    const ended = await Promise.race([this.#loop, expired]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    if (ended === 'expired') {
      await this.#service?.stop();
      await this.#loop;
    }
  }

  /**
   * The server process (pid) of the last stream the server started, which held the slot: a
   * stopping relay waits for it to let go (wal-outbox-slot-release.ts). Undefined while no stream
   * has started: a standby, or a relay that never reached the server, held nothing.
   */
  get walsender(): number | undefined {
    return this.#walsender;
  }

  /** Sends a position to the server on the stream of the moment; `ping`: asks it to answer at once. */
  acknowledge(lsn: string, ping = false): void {
    this.#service?.acknowledge(lsn, ping).catch(() => undefined);
  }

  pauseReading(): void {
    this.#liveness.paused();
    this.#connection()?.stream.pause();
  }

  resumeReading(): void {
    this.#liveness.resumed();
    this.#connection()?.stream.resume();
  }

  halt(): void {
    void this.#service?.stop().catch(() => undefined);
  }

  async #run(): Promise<void> {
    while (!this.#waits.stopping) {
      const stream = new LogicalReplicationService(
        { connectionString: this.#connectionString },
        // Confirmations are the relay's alone: only what was published is ever confirmed.
        { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
      );
      this.#service = stream;
      this.#liveness.started();
      stream.on('data', (_lsn: string, log: Pgoutput.Message) => {
        this.#liveness.heard();
        this.#health.succeeded('replication');
        this.intake.onData(log);
      });
      stream.on('heartbeat', (lsn: string, _time: number, replyRequested: boolean) => {
        this.#liveness.heard();
        this.#health.succeeded('replication');
        this.intake.onKeepalive(lsn, replyRequested);
      });
      // Every failure also ends subscribe(), which reports it below.
      stream.on('error', () => undefined);
      stream.on('start', () => {
        this.#liveness.heard();
        this.#health.succeeded('replication');
        this.#copying = true;
        this.#standby = false;
        this.#walsender = this.#client()?.processID ?? undefined;
        // Confirms what an earlier stream published but could not confirm.
        if (this.#positions.published > 0n) this.#positions.confirm(true);
        if (this.#waits.stopping) this.#endCopy();
        else this.#events.emit('streaming', { slotName: this.#slotName });
      });
      let keepReplying: TimerHandle | undefined;
      const replyEvery = (): void => {
        keepReplying = this.#clock.setTimeout(() => {
          if (this.#copying && this.#endIfSilent(stream)) return;
          // Nothing to report yet (no position at all): nothing asked, so no answer to wait for.
          if (!this.#positions.confirm(true, true)) this.#liveness.heard();
          replyEvery();
        }, this.#replyEveryMs);
      };
      /** The slot's position was read: a failure from here on is the stream's. */
      let caughtUp = false;
      try {
        await this.#catchUpWithSlot();
        caughtUp = true;
        if (!this.#waits.stopping) {
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
        if (!this.#waits.stopping && this.#silence === undefined) this.#reportError(error, caughtUp);
      }
      // Ended for its silence: the stream's end says nothing more (the relay closed it).
      if (this.#silence !== undefined && !this.#waits.stopping) this.#reportError(this.#silence, true);
      this.#silence = undefined;
      this.#copying = false;
      if (keepReplying !== undefined) this.#clock.clearTimeout(keepReplying);
      await stream.stop().catch(() => undefined);
      this.intake.reset();
      if (!this.#waits.stopping) await this.#reconnectWait.wait(this.#reconnectMs);
    }
  }

  /**
   * Everything before the slot's confirmed position was published (by this relay or another), so
   * the relay starts from there: a status reply then always names a real position.
   */
  async #catchUpWithSlot(): Promise<void> {
    const { rows } = await this.#health.track('database', 'stream', () =>
      this.#db.query<{ confirmed: string | null }>(
        `SELECT confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`,
        [this.#slotName],
      ),
    );
    const confirmed = rows[0]?.confirmed;
    if (confirmed == null) return;
    this.#positions.catchUp(parseLsn(confirmed));
  }

  /**
   * Ends `stream` when the server has not been heard for `receiveTimeoutMs` while the relay read
   * it (StreamLiveness): closing the socket, since a server that does not answer would not read a
   * goodbye either. The stream then starts again after `reconnectMs`; it is reported as failing.
   */
  #endIfSilent(stream: LogicalReplicationService): boolean {
    const silentMs = this.#liveness.silentFor();
    if (silentMs === undefined) return false;
    this.#silence = new KeelError(
      'KEEL_TIMEOUT',
      `the replication stream of slot ${this.#slotName} heard nothing from the server for ${silentMs} ms ` +
        `(receiveTimeoutMs ${this.#receiveTimeoutMs}): ended, to stream again`,
      { details: { slotName: this.#slotName, silentMs } },
    );
    // With the START_REPLICATION command running, the client's end destroys the socket.
    void stream.stop().catch(() => undefined);
    return true;
  }

  /** `fromStream`: the stream failed, not the read of the slot's position before it (recorded there). */
  #reportError(error: unknown, fromStream: boolean): void {
    // 55006 object_in_use: another relay streams from the slot. The server answered: this relay
    // stands by, which is not failing.
    if ((error as { code?: unknown } | null)?.code === '55006') {
      this.#health.succeeded('replication');
      if (!this.#standby) this.#events.emit('standby', { slotName: this.#slotName });
      this.#standby = true;
      return;
    }
    if (fromStream) this.#health.failed('replication', error, 'stream');
    this.#events.emit('error', { error, during: 'stream' });
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

  /**
   * The replication stream's pg connection: its socket, paused while the queue is full, and its
   * CopyDone. pg-logical-replication keeps it private (and pauses the same socket itself).
   */
  #connection(): ReplicationConnection | undefined {
    return (
      (this.#service as unknown as { _connection?: ReplicationConnection | null } | undefined)?._connection ??
      undefined
    );
  }

  /** The replication stream's pg client, which pg-logical-replication keeps private too. */
  #client(): ReplicationClient | undefined {
    return (
      (this.#service as unknown as { _client?: ReplicationClient | null } | undefined)?._client ?? undefined
    );
  }
}

/** The part of node-postgres' client the relay uses: the server process's pid, from BackendKeyData. */
interface ReplicationClient {
  processID: number | null;
}

/** The parts of node-postgres' connection the relay uses. */
interface ReplicationConnection {
  stream: { pause(): void; resume(): void };
  endCopyFrom(): void;
}
