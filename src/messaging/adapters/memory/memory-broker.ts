import { InvalidArgumentError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import { deadLetterEnvelope } from '../../dead-letter-envelope.ts';
import type { Delivery, DeliverySource } from '../../delivery-source.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';

interface Entry {
  readonly seq: number;
  envelope: Envelope;
  availableAt: number;
  attempts: number;
  leaseOwner: number | undefined;
  /** Which claim holds the lease: settles and renewals of an earlier claim match nothing. */
  leaseToken: number;
  leaseUntil: number;
  firstFailedAt: number | undefined;
}

interface MemoryDelivery extends Delivery {
  readonly entry: Entry;
  readonly token: number;
}

/**
 * An in-process broker with the PostgreSQL queue's semantics — leases, per-key ordering,
 * delayed and retried delivery, dead letters — on an injected clock. For unit tests and
 * simulation: nothing survives the process.
 */
export class MemoryBroker implements MessageBroker {
  readonly name = 'memory';
  readonly capabilities: BrokerCapabilities = {
    ordering: 'per-key',
    replayable: false,
    consumerGroups: false,
    redeliversOnNack: true,
    delayedDelivery: true,
  };
  readonly #clock: Clock;
  readonly #queues = new Map<string, Entry[]>();
  readonly #wakers = new Map<string, Set<() => void>>();
  #seq = 0;
  #owners = 0;
  #tokens = 0;
  #closed = false;

  constructor(options: { clock?: Clock } = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    this.#assertOpen();
    const queue = this.#queue(destination);
    const availableAt = options.availableAt ?? this.#clock.now();
    for (const envelope of messages) {
      queue.push({
        seq: ++this.#seq,
        envelope,
        availableAt,
        attempts: 0,
        leaseOwner: undefined,
        leaseToken: 0,
        leaseUntil: 0,
        firstFailedAt: undefined,
      });
    }
    this.#wake(destination);
  }

  source(destination: string, options: SourceOptions = {}): DeliverySource<MemoryDelivery> {
    if (options.group !== undefined) {
      throw new InvalidArgumentError(
        'group',
        'undefined: the memory broker has no consumer groups',
        options.group,
      );
    }
    const leaseMs = options.leaseMs ?? 30_000;
    const deadLetter = options.deadLetterDestination ?? `${destination}.dead-letter`;
    const owner = ++this.#owners;
    const clock = this.#clock;
    let wake: (() => void) | undefined;
    const queue = (): Entry[] => this.#queue(destination);
    const mine = ({ entry, token }: MemoryDelivery): boolean =>
      entry.leaseOwner === owner && entry.leaseToken === token && queue().includes(entry);
    return {
      destination,
      leaseMs,
      open: async (onWake) => {
        wake = onWake;
        this.#wakersOf(destination).add(onWake);
      },
      claim: async (max) => {
        this.#assertOpen();
        const now = clock.now();
        const claimed: MemoryDelivery[] = [];
        const token = ++this.#tokens;
        const keysAhead = new Set<string>();
        for (const entry of queue()) {
          if (claimed.length >= max) break;
          if (entry.leaseOwner !== undefined && entry.leaseUntil <= now) entry.leaseOwner = undefined;
          const blocked = entry.envelope.key !== null && keysAhead.has(entry.envelope.key);
          if (entry.envelope.key !== null) keysAhead.add(entry.envelope.key);
          if (blocked || entry.leaseOwner !== undefined || entry.availableAt > now) continue;
          entry.leaseOwner = owner;
          entry.leaseToken = token;
          entry.leaseUntil = now + leaseMs;
          entry.attempts += 1;
          claimed.push({ entry, token, envelope: entry.envelope, attempt: entry.attempts });
        }
        return claimed;
      },
      ack: async (deliveries) => {
        const lost: MemoryDelivery[] = [];
        for (const delivery of deliveries) {
          if (mine(delivery)) remove(queue(), delivery.entry);
          else lost.push(delivery);
        }
        return lost;
      },
      extend: async (deliveries) => {
        const until = clock.now() + leaseMs;
        const lost: MemoryDelivery[] = [];
        for (const delivery of deliveries) {
          if (mine(delivery)) delivery.entry.leaseUntil = until;
          else lost.push(delivery);
        }
        return lost;
      },
      retry: async (delivery, delayMs) => {
        if (!mine(delivery)) return;
        const { entry } = delivery;
        const now = clock.now();
        entry.leaseOwner = undefined;
        entry.availableAt = now + delayMs;
        entry.firstFailedAt ??= now;
        this.#clock.setTimeout(() => this.#wake(destination), delayMs);
      },
      deadLetter: async (delivery, error) => {
        if (!mine(delivery)) return;
        const { entry } = delivery;
        remove(queue(), entry);
        const now = clock.now();
        const iso = (ms: number): string => new Date(ms).toISOString();
        const failed = {
          envelope: entry.envelope,
          attempt: entry.attempts,
          firstFailedAt: entry.firstFailedAt === undefined ? undefined : iso(entry.firstFailedAt),
        };
        await this.publish(deadLetter, [deadLetterEnvelope(failed, destination, error, iso(now))]);
      },
      release: async (delivery) => {
        if (!mine(delivery)) return;
        const { entry } = delivery;
        entry.leaseOwner = undefined;
        entry.attempts = Math.max(0, entry.attempts - 1);
        this.#wake(destination);
      },
      close: async () => {
        if (wake) this.#wakersOf(destination).delete(wake);
      },
    };
  }

  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    return new QueueConsumer(this.source(destination, options), handler, { clock: this.#clock, ...options });
  }

  async redrive(
    deadLetterDestination: string,
    options: { to?: string; limit?: number } = {},
  ): Promise<number> {
    const dead = this.#queue(deadLetterDestination);
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const moved: Entry[] = [];
    for (const entry of [...dead]) {
      if (moved.length >= limit) break;
      if (entry.leaseOwner !== undefined) continue;
      const target = options.to ?? entry.envelope.headers['x-dead-letter-source'];
      if (target === undefined) continue;
      remove(dead, entry);
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(entry.envelope.headers)) {
        if (!name.startsWith('x-dead-letter-')) headers[name] = value;
      }
      headers['x-redrive-count'] = String(Number(entry.envelope.headers['x-redrive-count'] ?? 0) + 1);
      await this.publish(target, [{ ...entry.envelope, headers }]);
      moved.push(entry);
    }
    return moved.length;
  }

  /** Messages waiting in `destination` (ready, delayed and leased). */
  depth(destination: string): number {
    return this.#queues.get(destination)?.length ?? 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #queue(destination: string): Entry[] {
    let queue = this.#queues.get(destination);
    if (queue === undefined) this.#queues.set(destination, (queue = []));
    return queue;
  }

  #wakersOf(destination: string): Set<() => void> {
    let set = this.#wakers.get(destination);
    if (set === undefined) this.#wakers.set(destination, (set = new Set()));
    return set;
  }

  #wake(destination: string): void {
    for (const wake of this.#wakers.get(destination) ?? []) wake();
  }

  #assertOpen(): void {
    if (this.#closed) throw new InvalidArgumentError('broker', 'an open broker', 'closed');
  }
}

function remove(queue: Entry[], entry: Entry): void {
  const index = queue.indexOf(entry);
  if (index >= 0) queue.splice(index, 1);
}
