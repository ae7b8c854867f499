// What the replication stream delivers, queued for the WAL outbox relay's publisher in commit
// order: each committed transaction's keel messages (decoded, in runs of one destination, in the
// order written) and each position the server has passed. While the queue is full the stream's
// socket is not read. A stream that ends takes its queue with it (`reset`): the next one sends
// again from the confirmed position.
import type { Pgoutput } from 'pg-logical-replication';
import { parseLsn } from './lsn.ts';
import type { RelayWaits } from './relay-waits.ts';
import type { WalOutboxRelayEmitter } from './wal-outbox-relay-events.ts';
import type { SlotPositions } from './wal-outbox-relay-positions.ts';
import { ReceivedQueue, type Received } from './wal-outbox-received.ts';
import { decodeWalOutboxRecord, isNewerWalOutboxRecord } from './wal-outbox-record.ts';

/** What the intake asks of the stream that feeds it (the stream's connection of the moment). */
export interface IntakeSource {
  /** Stops reading the socket: the server holds the rest. */
  pauseReading(): void;
  resumeReading(): void;
  /** Ends the stream of the moment; the stream then starts again after `reconnectMs`. */
  halt(): void;
}

export interface StreamIntakeOptions {
  /** The logical-message prefix of keel's records; other messages are passed over. */
  prefix: string;
  maxBuffered: number;
  positions: SlotPositions;
  /** Stopping: nothing more is queued. A wake-up: the publisher has something to take. */
  waits: RelayWaits;
  /** Reports records it cannot read (`error`, `during: 'decode'`). */
  events: WalOutboxRelayEmitter;
  source: IntakeSource;
}

export class StreamIntake {
  readonly #prefix: string;
  readonly #maxBuffered: number;
  readonly #positions: SlotPositions;
  readonly #waits: RelayWaits;
  readonly #events: WalOutboxRelayEmitter;
  readonly #source: IntakeSource;
  /** The current stream's transactions, received and not yet taken for publishing. */
  #queue = new ReceivedQueue();
  #paused = false;
  /** A record this relay cannot read was met: nothing more is taken from this stream. */
  #halted = false;
  /** The transaction being received (between its begin and its commit). */
  #current: Received | undefined;

  constructor(options: StreamIntakeOptions) {
    this.#prefix = options.prefix;
    this.#maxBuffered = options.maxBuffered;
    this.#positions = options.positions;
    this.#waits = options.waits;
    this.#events = options.events;
    this.#source = options.source;
  }

  /** The current stream's queue, for the publisher to take from. */
  get queue(): ReceivedQueue {
    return this.#queue;
  }

  /** Messages received from the stream and not yet published. */
  get held(): number {
    return this.#queue.held;
  }

  onData(log: Pgoutput.Message): void {
    // Stopping: nothing more is published, so what the server still sends is dropped.
    if (this.#halted || this.#waits.stopping) return;
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
          this.#events.emit('error', { error, during: 'decode' });
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
        if (received.lsn <= this.#positions.taken) return;
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
  onKeepalive(lsn: string, replyRequested: boolean): void {
    if (this.#halted) return;
    const position = parseLsn(lsn);
    if (position > this.#positions.taken && !this.#waits.stopping) {
      this.#enqueue({ sends: [], count: 0, lsn: position });
    }
    if (replyRequested) this.#positions.confirm(true);
  }

  /**
   * The publisher published a batch taken from `queue`: the socket is read again once the
   * current stream's queue is down to half of `maxBuffered`.
   */
  released(queue: ReceivedQueue): void {
    if (this.#paused && queue === this.#queue && queue.held <= this.#maxBuffered / 2) {
      this.#paused = false;
      this.#source.resumeReading();
    }
  }

  /**
   * The stream ended: what was received and not yet taken comes again on the next stream (from
   * the confirmed position); what is being published now is skipped then by its position.
   */
  reset(): void {
    this.#queue = new ReceivedQueue();
    this.#current = undefined;
    this.#paused = false;
    this.#halted = false;
  }

  #enqueue(received: Received): void {
    this.#queue.push(received);
    if (this.#queue.held >= this.#maxBuffered && !this.#paused) {
      this.#paused = true;
      this.#source.pauseReading();
    }
    this.#waits.wake();
  }

  /** Stops taking anything from this stream (which then ends), so nothing past here is confirmed. */
  #halt(): void {
    this.#halted = true;
    this.#current = undefined;
    this.#source.halt();
  }
}
