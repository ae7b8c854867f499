// The WAL outbox relay: its lifecycle, and the loop that publishes what the stream delivered. Its
// other parts: the options (wal-outbox-relay-options.ts), the replication stream
// (wal-outbox-relay-stream.ts) and what it delivers (wal-outbox-relay-intake.ts), the positions
// confirmed to the slot (wal-outbox-relay-positions.ts), the publish of a batch
// (wal-outbox-relay-batch.ts), the keys held behind parked messages
// (wal-outbox-relay-held-keys.ts), the publisher's waits (relay-waits.ts), and the wait of a stop
// for the server to let the slot go (wal-outbox-slot-release.ts).
import type { Db } from '../db/db.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import type { Publisher } from '../messaging/publisher.ts';
import type { CircuitBreakerPolicy } from '../resilience/index.ts';
import { HealthRecord, ServiceBase, type ReportsHealth, type ServiceHealth } from '../service/index.ts';
import { systemClock } from '../time/index.ts';
import type { WalOutboxRelayDependency } from './relay-health.ts';
import { RelayWaits } from './relay-waits.ts';
import { BatchPublisher } from './wal-outbox-relay-batch.ts';
import type { WalOutboxRelayEvents } from './wal-outbox-relay-events.ts';
import { HeldKeys } from './wal-outbox-relay-held-keys.ts';
import { resolveWalOutboxRelayOptions, type WalOutboxRelayOptions } from './wal-outbox-relay-options.ts';
import { SlotPositions } from './wal-outbox-relay-positions.ts';
import { ReplicationStream } from './wal-outbox-relay-stream.ts';
import { ensureWalOutboxSlot } from './wal-outbox-slot.ts';
import { waitForSlotRelease } from './wal-outbox-slot-release.ts';

export type { WalOutboxRelayOptions } from './wal-outbox-relay-options.ts';
export type { WalOutboxRelayEvents } from './wal-outbox-relay-events.ts';

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
 * over within `reconnectMs` of the active one stopping. A stopped relay has let the slot go: a
 * relay started right after takes it at its first try.
 *
 * Stop: `stop()` is every service's, and then — for a relay that streamed from the slot — waits
 * until the server reports the slot let go by the process that streamed it
 * (`pg_replication_slots`, read on the relay's Db every 20 ms), so that a relay started right after
 * takes the slot at its first try instead of standing by a turn of `reconnectMs`. That wait is
 * bounded by `slotReleaseMs` and comes after the drain (also when the drain deadline passed: the
 * stream ends after it); it ends at once when the server cannot be asked. The relay is 'stopping'
 * until it ends. The `slot-release` event says how it ended; `stop()` resolves either way. A
 * standby, which never held the slot, waits for nothing.
 */
export class WalOutboxRelay extends ServiceBase<WalOutboxRelayEvents> implements ReportsHealth {
  readonly #db: Db;
  /**
   * No dependency has a silence of its own: an idle server sends nothing on the stream (the
   * relay's status replies keep it open), and the broker and the table outbox are written only
   * when there are messages.
   */
  readonly #health: HealthRecord<WalOutboxRelayDependency>;
  readonly #slotName: string;
  readonly #publicationName: string;
  readonly #batchSize: number;
  readonly #slotReleaseMs: number;
  /** The publisher's waits; a stop ends them, and the stream's and the publisher's loops. */
  readonly #waits: RelayWaits;
  readonly #positions: SlotPositions;
  readonly #stream: ReplicationStream;
  readonly #heldKeys: HeldKeys;
  readonly #batches: BatchPublisher;
  /**
   * Aborts when a stop's drain deadline passes with a batch still being published: that batch is
   * abandoned (wal-outbox-relay-batch.ts), and nothing it ends with is confirmed or reported.
   */
  readonly #abandon = new AbortController();
  /** The breaker every publish goes through. */
  readonly breaker: CircuitBreakerPolicy;
  #publishLoop: Promise<void> | undefined;

  constructor(db: Db, publisher: Publisher, options: WalOutboxRelayOptions) {
    super(options?.name ?? 'wal-outbox-relay', options?.clock ?? systemClock);
    if (typeof publisher?.publish !== 'function') {
      throw new InvalidArgumentError('publisher', 'a Publisher', publisher);
    }
    const resolved = resolveWalOutboxRelayOptions(options, this.clock);
    const { clock, events } = this;
    // A publish or a statement open past receiveTimeoutMs hangs: the relay's patience with any one
    // answer, as with its stream's server (wal-outbox-relay-liveness.ts).
    const health = new HealthRecord<WalOutboxRelayDependency>(clock, {
      replication: {},
      broker: { hangMs: resolved.receiveTimeoutMs },
      database: { hangMs: resolved.receiveTimeoutMs },
    });
    this.#health = health;
    this.#db = db;
    this.#slotName = resolved.slotName;
    this.#publicationName = resolved.publicationName;
    this.#batchSize = resolved.batchSize;
    this.#slotReleaseMs = resolved.slotReleaseMs;
    this.breaker = resolved.breaker;
    const waits = new RelayWaits(clock);
    this.#waits = waits;
    this.#positions = new SlotPositions(clock, (lsn, ping) => this.#stream.acknowledge(lsn, ping));
    this.#stream = new ReplicationStream({
      ...resolved,
      db,
      clock,
      positions: this.#positions,
      waits,
      events,
      health,
    });
    this.#heldKeys = new HeldKeys({ db, clock, retryDelay: resolved.retryDelay, waits, events, health });
    this.#batches = new BatchPublisher({
      ...resolved,
      publisher,
      heldKeys: this.#heldKeys,
      clock,
      waits,
      events,
      abandoned: this.#abandon.signal,
      health,
    });
  }

  /** Messages received from the stream and not yet published. */
  get buffered(): number {
    return this.#stream.intake.held;
  }

  /**
   * Whether this relay reaches what it depends on, from the outcome of its own calls (a read of
   * memory: no statement runs). 'failing' names `replication` while its replication stream cannot
   * be started or breaks (it streams again every `reconnectMs`), `database` while the read of
   * the slot's position before each stream or a write to the table outbox (a parked message, or
   * one held behind it) fails, and `broker` while its publishes fail for the broker's sake
   * (unavailable, a timeout, the breaker open or isolated). A message refused for what it is (a
   * permanent error: it is parked) is not the broker's failure. Each goes back to 'ok' at its next
   * call that succeeds.
   *
   * A standby relay (another relay streams from the slot) is 'ok': the server answers each of its
   * tries, every `reconnectMs`, and that answer is its contact. A stream that heard nothing from
   * the server for `receiveTimeoutMs` while the relay read it (each status report asks for an
   * answer) is ended and reported as failing `replication`, then streamed again. A publish or a
   * statement still unanswered after `receiveTimeoutMs` is failing too (`broker` or `database`,
   * `failures` 0: it hangs), until it ends; it also shows in `buffered` and the slot's lag.
   */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  /** A stop's wait for the server to let the slot go (the class's doc says why and how long). */
  protected override async afterDrain(): Promise<void> {
    const walsender = this.#stream.walsender;
    if (walsender === undefined || this.#slotReleaseMs === 0) return;
    const release = await waitForSlotRelease({
      db: this.#db,
      clock: this.clock,
      slotName: this.#slotName,
      walsender,
      timeoutMs: this.#slotReleaseMs,
    });
    this.events.emit('slot-release', { slotName: this.#slotName, ...release });
  }

  protected override async onStart(): Promise<void> {
    this.#health.started();
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
    await this.#heldKeys.load();
    this.#health.succeeded('database');
    this.#stream.start();
    this.#publishLoop = this.#runPublisher();
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    // The batch being published finishes and is confirmed; what is still queued stays in the
    // slot, for the next relay. Past the drain deadline the batch is abandoned instead: a publish
    // that never answers must not keep the stream open, since the slot streams to one connection
    // at a time and a standby relay could never take over. What was published before it is
    // confirmed and the stream ended (CopyDone goes out before stop() returns); the abandoned
    // batch is not confirmed, so the next relay publishes it again.
    const abandon = (): void => this.#abandon.abort(drain.reason);
    drain.addEventListener('abort', abandon, { once: true });
    try {
      this.#waits.stop();
      this.#stream.stopWaiting();
      const ended = await Promise.race([this.#publishLoop, abandoned(this.#abandon.signal)]);
      if (ended === 'abandoned') this.#positions.confirmLast();
      await this.#stream.end();
    } finally {
      drain.removeEventListener('abort', abandon);
    }
  }

  async #runPublisher(): Promise<void> {
    const intake = this.#stream.intake;
    while (!this.#waits.stopping) {
      const queue = intake.queue;
      const batch = queue.take(this.#batchSize);
      if (batch === undefined) {
        await this.#waits.wait(60_000);
        continue;
      }
      this.#positions.take(batch.lsn);
      const accepted = await this.#batches.publish(batch.sends);
      // Abandoned: the stop went on without this batch and confirmed what came before it.
      if (this.#abandon.signal.aborted) return;
      if (accepted === undefined) break;
      batch.release();
      intake.released(queue);
      this.#positions.publish(batch.lsn);
      for (const send of accepted) this.events.emit('published', send);
    }
    // Stopping: what was published is confirmed before the stream closes.
    this.#positions.confirmLast();
  }
}

/** Resolves when the relay abandons the batch in hand; never, on a stop that ends in time. */
function abandoned(signal: AbortSignal): Promise<'abandoned'> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve('abandoned');
    else signal.addEventListener('abort', () => resolve('abandoned'), { once: true });
  });
}
