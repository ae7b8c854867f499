import { InvalidArgumentError } from '../errors/index.ts';
import type { HybridLogicalClock } from '../ordering/index.ts';
import type { Clock } from '../time/index.ts';
import type { Delivery, DeliverySource } from './delivery-source.ts';
import type { MessageRegistry } from './message-registry.ts';
import { lowWaterMark } from './refill-policy.ts';

export interface QueueConsumerOptions {
  /** Messages handled at once. Default 1. */
  concurrency?: number;
  /**
   * Messages claimed ahead of free handler slots and held in memory, so that a finished handler
   * finds its next message without a round trip to the engine, and claims bring many messages at
   * once (see `refill-policy.ts` for when the buffer is refilled). Their leases are renewed with the
   * others' (see `heartbeatMs`); per-key ordering is unaffected (an engine hands out one message
   * per key at a time). On stop they are released unhandled, without counting an attempt. Default: the
   * source's `defaultPrefetch` — 16 on the PostgreSQL queue (a handful of round trips per hundred
   * messages instead of two per message), else 0. Set 0 when handlers are slow (seconds) and
   * several consumers share the queue, so that work spreads across them instead of waiting in
   * one consumer's buffer.
   */
  prefetch?: number;
  /** Deliveries (counting the first) before a message is dead-lettered. Default 5. */
  maxAttempts?: number;
  /** Delay before redelivery after attempt `attempt` failed. Default: 1 s doubling to 60 s. */
  retryDelay?: (attempt: number) => number;
  /** How often to look for work when no wake-up arrives. Default 1 000 ms. */
  pollIntervalMs?: number;
  /**
   * How often the leases of every held message (claimed ahead, being handled, awaiting its ack)
   * are renewed, in one call, for sources with leases (`leaseMs` and `extend`): a handler slower
   * than the lease keeps its message, and a crashed consumer's messages come back one lease after
   * its last renewal. A renewal that finds a message taken aborts its handler's `ctx.signal` with
   * a `LeaseLostError`. Must be below the lease. Default `leaseMs / 3`; `false`: never renew (a
   * handler slower than the lease has its message delivered again while it runs). Ignored for
   * sources without leases.
   */
  heartbeatMs?: number | false;
  /** Validates each envelope before the handler sees it; an invalid one is dead-lettered at once. */
  registry?: MessageRegistry;
  /**
   * This process's hybrid logical clock: every received envelope's stamp is merged into it
   * (the receive event), so what this process stamps next is ordered after what it consumed.
   */
  hlc?: HybridLogicalClock;
  clock?: Clock;
  name?: string;
}

/** The options with their defaults applied, as the runtime reads them. */
export interface ResolvedConsumerOptions {
  concurrency: number;
  prefetch: number;
  maxAttempts: number;
  retryDelay: (attempt: number) => number;
  pollIntervalMs: number;
  registry: MessageRegistry | undefined;
  hlc: HybridLogicalClock | undefined;
  /** The source's lease, when it has one the runtime renews. */
  leaseMs: number | undefined;
  heartbeatMs: number | undefined;
  /** The fewest messages worth a claim while every handler slot has work (see `refill-policy.ts`). */
  lowWater: number;
}

const defaultRetryDelay = (attempt: number): number => Math.min(60_000, 1000 * 2 ** (attempt - 1));

/** Applies the defaults and validates, naming the field at fault. */
export function resolveOptions(
  options: QueueConsumerOptions,
  source: DeliverySource<Delivery>,
): ResolvedConsumerOptions {
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError('concurrency', 'an integer >= 1', concurrency);
  }
  const prefetch = options.prefetch ?? source.defaultPrefetch ?? 0;
  if (!Number.isInteger(prefetch) || prefetch < 0) {
    throw new InvalidArgumentError('prefetch', 'an integer >= 0', prefetch);
  }
  const maxAttempts = options.maxAttempts ?? 5;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidArgumentError('maxAttempts', 'an integer >= 1', maxAttempts);
  }
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new InvalidArgumentError('pollIntervalMs', 'a number > 0', pollIntervalMs);
  }
  const leaseMs = source.extend === undefined ? undefined : source.leaseMs;
  let heartbeatMs: number | undefined;
  if (leaseMs !== undefined && options.heartbeatMs !== false) {
    heartbeatMs = options.heartbeatMs ?? leaseMs / 3;
    if (!Number.isFinite(heartbeatMs) || heartbeatMs <= 0 || heartbeatMs >= leaseMs) {
      throw new InvalidArgumentError('heartbeatMs', `a number > 0 and < leaseMs (${leaseMs})`, heartbeatMs);
    }
  }
  return {
    leaseMs,
    heartbeatMs,
    concurrency,
    prefetch,
    lowWater: lowWaterMark(concurrency, prefetch),
    maxAttempts,
    pollIntervalMs,
    retryDelay: options.retryDelay ?? defaultRetryDelay,
    registry: options.registry,
    hlc: options.hlc,
  };
}
