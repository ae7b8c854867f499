// The keys the WAL outbox relay holds back, and the writes to the table outbox that hold them: a
// message parked there, and the later messages of its key written behind it, so that the table
// relay publishes them in order once the parked one is retried. Each write is retried until it
// succeeds, or the relay stops.
import type { Db } from '../db/db.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { describeError } from '../messaging/describe-error.ts';
import type { Clock } from '../time/index.ts';
import type { RelayHealth } from './relay-health.ts';
import type { RelayWaits } from './relay-waits.ts';
import {
  holdWalOutboxMessages,
  keysWithUnpublishedRows,
  parkWalOutboxMessage,
} from './wal-outbox-parking.ts';
import type { WalOutboxRelayEmitter } from './wal-outbox-relay-events.ts';

export interface HeldKeysOptions {
  db: Db;
  clock: Clock;
  /** Delay before a failed write is tried again. */
  retryDelay: (attempt: number) => number;
  /** Waits out the delay; stopping, a write that failed is given up. */
  waits: RelayWaits;
  /** Reports failed writes (`error`, `during: 'hold'` or `'park'`) and `parked`. */
  events: WalOutboxRelayEmitter;
  /** Where each write's outcome goes, for the relay's `health()`. */
  health: RelayHealth<'database'>;
}

export class HeldKeys {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #retryDelay: (attempt: number) => number;
  readonly #waits: RelayWaits;
  readonly #events: WalOutboxRelayEmitter;
  readonly #health: RelayHealth<'database'>;
  /**
   * (destination, key) pairs with a row in the table outbox not yet published — a message this
   * relay parked, say: later messages of those keys go into the table behind it, not to the
   * broker, so a key's order holds across a parked message.
   */
  readonly #keys = new Set<string>();

  constructor(options: HeldKeysOptions) {
    this.#db = options.db;
    this.#clock = options.clock;
    this.#retryDelay = options.retryDelay;
    this.#waits = options.waits;
    this.#events = options.events;
    this.#health = options.health;
  }

  /** Holds the keys that have rows in the table outbox not yet published. */
  async load(): Promise<void> {
    for (const { destination, key } of await keysWithUnpublishedRows(this.#db)) {
      this.#keys.add(heldKey(destination, key));
    }
  }

  has(destination: string, key: string | null): boolean {
    return key !== null && this.#keys.has(heldKey(destination, key));
  }

  /**
   * Writes the messages of held keys into the table outbox, behind the rows they wait for, and
   * returns the others; a key whose table rows have all been published since is released first.
   * Undefined when stopped before the write succeeded.
   */
  async holdBack(destination: string, messages: Envelope[]): Promise<Envelope[] | undefined> {
    if (this.#keys.size === 0) return messages;
    const keys = new Set<string>();
    for (const m of messages)
      if (m.key !== null && this.#keys.has(heldKey(destination, m.key))) keys.add(m.key);
    if (keys.size === 0) return messages;
    const pairs = [...keys].map((key) => ({ destination, key }));
    const still = await this.#retryingDb('hold', () => keysWithUnpublishedRows(this.#db, pairs));
    if (still === undefined) return undefined;
    const waiting = new Set(still.value.map((p) => p.key));
    for (const key of keys) if (!waiting.has(key)) this.#keys.delete(heldKey(destination, key));
    const held = messages.filter((m) => m.key !== null && waiting.has(m.key));
    if (held.length === 0) return messages;
    if (!(await this.hold(destination, held))) return undefined;
    return messages.filter((m) => m.key === null || !waiting.has(m.key));
  }

  /** Writes messages of held keys into the table outbox; false when stopped before it succeeded. */
  async hold(destination: string, messages: Envelope[]): Promise<boolean> {
    const held = await this.#retryingDb('hold', () => holdWalOutboxMessages(this.#db, destination, messages));
    return held !== undefined;
  }

  /**
   * Moves a message to the table outbox as a parked row, which holds its key; retried until it is
   * written. False when stopped before it was.
   */
  async park(destination: string, message: Envelope, error: unknown, attempts: number): Promise<boolean> {
    const parked = await this.#retryingDb('park', () =>
      parkWalOutboxMessage(this.#db, destination, message, {
        attempts,
        error: describeError(error),
        // Taken at each try: the row says when the message was parked, not first tried.
        now: new Date(this.#clock.now()),
      }),
    );
    if (parked === undefined) return false;
    if (message.key !== null) this.#keys.add(heldKey(destination, message.key));
    this.#events.emit('parked', { message, error });
    return true;
  }

  /**
   * Runs a statement until it succeeds (errors reported as `during`, retried after `retryDelay`)
   * and wraps its result; undefined only when the relay stopped first.
   */
  async #retryingDb<T>(
    during: 'hold' | 'park',
    statement: () => Promise<T>,
  ): Promise<{ value: T } | undefined> {
    for (let tries = 1; ; tries++) {
      try {
        return { value: await this.#health.track('database', during, statement) };
      } catch (error) {
        this.#events.emit('error', { error, during });
        if (this.#waits.stopping) return undefined;
        await this.#waits.wait(this.#retryDelay(tries));
      }
    }
  }
}

/** A (destination, key) pair as one string, for the set of held keys. */
function heldKey(destination: string, key: string): string {
  return `${destination}\u0000${key}`;
}
