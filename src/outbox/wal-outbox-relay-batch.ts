// The publish of a batch the WAL outbox relay took from its stream: each destination's messages
// in order, through the breaker, retried while a retry can fix the failure, split to find the
// message at fault, which is parked. The messages of held keys go to the table outbox instead
// (wal-outbox-relay-held-keys.ts). A stop past its drain deadline abandons the batch where it
// stands.
import type { Envelope } from '../messaging/envelope.ts';
import type { Publisher } from '../messaging/publisher.ts';
import { BrokenCircuitError, IsolatedCircuitError, type CircuitBreakerPolicy } from '../resilience/index.ts';
import type { Clock } from '../time/index.ts';
import { breakerRefusal, publishFailed, type RelayHealth } from './relay-health.ts';
import { isPermanentPublishError } from './relay-policy.ts';
import type { RelayWaits } from './relay-waits.ts';
import type { Send } from './wal-outbox-received.ts';
import type { WalOutboxRelayEmitter } from './wal-outbox-relay-events.ts';
import type { HeldKeys } from './wal-outbox-relay-held-keys.ts';
import type { ResolvedWalOutboxRelayOptions } from './wal-outbox-relay-options.ts';

export interface BatchPublisherOptions extends Pick<
  ResolvedWalOutboxRelayOptions,
  'batchSize' | 'maxAttempts' | 'retryDelay' | 'reconnectMs' | 'breaker'
> {
  publisher: Publisher;
  heldKeys: HeldKeys;
  clock: Clock;
  /** Waits out retries and the open breaker; stopping, the batch in hand is given up at its first failure. */
  waits: RelayWaits;
  /** Reports `publish-failed`. */
  events: WalOutboxRelayEmitter;
  /**
   * Aborts when a stop's drain deadline passes: the batch in hand is abandoned where it stands.
   * No further call goes to the broker or write to the table outbox; the relay no longer waits
   * for the call still running, and what that call ends with is neither reported nor taken as
   * accepted: the batch is not confirmed, and the next relay gets it again from the slot.
   */
  abandoned: AbortSignal;
  /** Where each publish's outcome goes, for the relay's `health()`. */
  health: RelayHealth<'broker'>;
}

export class BatchPublisher {
  readonly #publisher: Publisher;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #heldKeys: HeldKeys;
  readonly #clock: Clock;
  readonly #waits: RelayWaits;
  readonly #events: WalOutboxRelayEmitter;
  readonly #abandoned: AbortSignal;
  readonly #batchSize: number;
  readonly #maxAttempts: number;
  readonly #retryDelay: (attempt: number) => number;
  readonly #reconnectMs: number;
  readonly #health: RelayHealth<'broker'>;
  /** Stopping, a publish failed: the rest of the batch in hand is given up too. */
  #givingUp = false;

  constructor(options: BatchPublisherOptions) {
    this.#publisher = options.publisher;
    this.#breaker = options.breaker;
    this.#heldKeys = options.heldKeys;
    this.#clock = options.clock;
    this.#waits = options.waits;
    this.#events = options.events;
    this.#abandoned = options.abandoned;
    this.#batchSize = options.batchSize;
    this.#maxAttempts = options.maxAttempts;
    this.#retryDelay = options.retryDelay;
    this.#reconnectMs = options.reconnectMs;
    this.#health = options.health;
  }

  /**
   * Publishes each destination's messages in order, in calls of `batchSize`; returns what the
   * broker accepted (parked messages left out), or undefined when stopped first or abandoned.
   */
  async publish(sends: readonly Send[]): Promise<Send[] | undefined> {
    const accepted: Send[] = [];
    for (const { destination, messages } of sends) {
      const taken: Envelope[] = [];
      for (let start = 0; start < messages.length; start += this.#batchSize) {
        if (this.#abandoned.aborted) return undefined;
        // Checked per call: a message parked in the call before holds its key for the rest.
        const chunk = await this.#heldKeys.holdBack(
          destination,
          messages.slice(start, start + this.#batchSize),
        );
        if (chunk === undefined || !(await this.#deliver(destination, chunk, taken))) return undefined;
      }
      if (taken.length > 0) accepted.push({ destination, messages: taken });
    }
    // The last write to the table outbox may have ended after the batch was abandoned.
    return this.#abandoned.aborted ? undefined : accepted;
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
      if (this.#abandoned.aborted) return false;
      // Stopping, the batch in hand is still published, call by call, while the broker takes it:
      // it is confirmed whole, so none of a transaction larger than a call comes again. The first
      // failure gives up the rest, which the next relay gets from the slot.
      if (this.#waits.stopping && (tries > 0 || this.#givingUp)) {
        this.#givingUp = true;
        return false;
      }
      const refusal = breakerRefusal(this.#breaker, this.#clock.now());
      if (refusal !== undefined) {
        // Nothing gets through: the broker is failing (relay-health.ts), also when the breaker
        // was opened elsewhere or isolated by hand.
        this.#health.failed('broker', refusal, 'publish');
        await this.#waits.wait(this.#breakerWaitMs());
        continue;
      }
      const closedBefore = this.#breaker.state.status === 'closed';
      // Open until it answers: one that does not answer for the relay's bound is failing (it hangs).
      const answered = this.#health.calling('broker', 'publish');
      try {
        await this.#breaker.execute(() => this.#publisher.publish(destination, messages));
        answered();
        this.#health.succeeded('broker');
        for (const message of messages) accepted.push(message);
        return true;
      } catch (error) {
        answered();
        // A call that fails after the batch was abandoned is neither reported nor retried.
        if (this.#abandoned.aborted) return false;
        publishFailed(this.#health, error);
        if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError) continue;
        const permanent = isPermanentPublishError(error);
        const charged = closedBefore || permanent;
        this.#events.emit('publish-failed', { destination, messages, error, charged });
        if (charged) attempts++;
        if (permanent || attempts >= this.#maxAttempts) {
          if (messages.length === 1) return this.#heldKeys.park(destination, messages[0]!, error, attempts);
          for (const message of messages) {
            if (this.#abandoned.aborted) return false;
            // A message parked just before may hold this one's key: it waits behind it.
            if (this.#heldKeys.has(destination, message.key)) {
              if (!(await this.#heldKeys.hold(destination, [message]))) return false;
              continue;
            }
            if (!(await this.#deliver(destination, [message], accepted))) return false;
          }
          return true;
        }
        await this.#waits.wait(this.#retryDelay(Math.max(1, attempts)));
      }
    }
  }

  #breakerWaitMs(): number {
    const state = this.#breaker.state;
    if (state.status !== 'open') return this.#reconnectMs;
    return Math.max(1, state.until - this.#clock.now());
  }
}
