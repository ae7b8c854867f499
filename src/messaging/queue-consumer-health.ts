import { HealthRecord, type ServiceHealth } from '../service/index.ts';
import type { Clock } from '../time/index.ts';
import type { ConnectionLoss } from './delivery-source.ts';
import type { ResolvedConsumerOptions } from './queue-consumer-options.ts';

/**
 * The consumer's record of its calls to the broker (its `DeliverySource`: opens, claims, acks,
 * settles, lease renewals), for `health()`. A handler's own failure is not one of them.
 *
 * Silence counts only on a source whose leases the consumer renews: it then calls the broker at
 * least every `pollIntervalMs` (a claim, while it has room) or every `heartbeatMs` (a renewal,
 * while it holds anything), so no answer for a lease and a poll interval means a call hangs —
 * and its held messages' leases have run out by then as far as the engine is concerned. Without
 * renewals (RabbitMQ, Kafka, `heartbeatMs: false`) a consumer whose every slot is taken by a
 * slow handler calls nothing until one finishes, so silence says nothing there; only failed
 * calls count.
 */
export function consumerHealthRecord(
  clock: Clock,
  options: Pick<ResolvedConsumerOptions, 'leaseMs' | 'heartbeatMs' | 'pollIntervalMs'>,
): HealthRecord<'broker'> {
  const { leaseMs, heartbeatMs, pollIntervalMs } = options;
  const renews = leaseMs !== undefined && heartbeatMs !== undefined;
  return new HealthRecord(clock, { broker: renews ? { silentMs: leaseMs + pollIntervalMs } : {} });
}

/**
 * What the record says (`recorded`), unless the source says its own connection is lost: then
 * failing, `during: 'connect'`, from the loss — whether or not the consumer calls anything
 * meanwhile (every slot busy) — unless its calls began failing earlier: the earlier `since`
 * names the failure, as across dependencies in `HealthRecord`: the runtime records no claim
 * made during a loss (it answers from memory, with nothing or with messages pushed before the
 * loss), so such claims do not wipe it.
 */
export function withConnectionLoss(recorded: ServiceHealth, loss: ConnectionLoss | undefined): ServiceHealth {
  if (loss === undefined || recorded.status === 'not-running') return recorded;
  // At the same instant the loss names it: the calls failed because of it.
  if (recorded.status === 'failing' && recorded.since < loss.since) return recorded;
  const contact = recorded.lastContactAt;
  return {
    status: 'failing',
    dependency: 'broker',
    during: 'connect',
    since: loss.since,
    failures: loss.attempts,
    lastError: loss.error,
    lastContactAt: contact === undefined ? undefined : Math.min(contact, loss.since),
  };
}
