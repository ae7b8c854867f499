// The order-fulfilment saga: what happens to an order after it is placed. Each step's effect is
// keyed by the step's idempotency key, so a step repeated after a crash or a lost lease applies
// its effect once; each completed step is undone in reverse when a later one fails for good.
import type { Db, Queryable } from '../../../src/db/index.ts';
import { KeelError } from '../../../src/errors/index.ts';
import {
  defineSaga,
  getSaga,
  sagaIdempotencyKey,
  startSaga,
  type SagaDefinition,
  type StoredError,
} from '../../../src/saga/index.ts';
import { exponentialBackoff, type Clock } from '../../../src/time/index.ts';
import type { Envelope } from '../../../src/messaging/index.ts';
import { injectTraceHeaders, tracedAddToOutbox } from '../../../src/observability/index.ts';
import { orderCancelledV1, orderConfirmedV1, orderEventsStream } from '../contracts/order-events.ts';
import type { Order, OrderItem } from '../domain/order.ts';
import { findOrder, transitionOrder, transitionOrderAtVersion } from '../storage/orders-store.ts';
import { releaseStock, reserveStock, type Reservation } from '../storage/inventory-store.ts';
import type { Payments } from './payments.ts';

/** What an instance is started with: the `order.placed.v1` payload. */
export interface FulfilmentInput {
  orderId: string;
  customerId: string;
  items: OrderItem[];
}

export interface FulfilmentDeps {
  db: Db;
  clock: Clock;
  payments: Payments;
}

/** The saga's instance id for an order: a second start for the order (a redelivery) is a no-op. */
export const fulfilmentId = (orderId: string): string => `order-fulfilment:${orderId}`;

/** The version new orders start. Instances of version 1 finish on it (the worker runs both). */
export const fulfilmentVersion = 2;

/**
 * `order-fulfilment@2`:
 * 1. `accept-order`: PENDING → ACCEPTED. Compensation: the order becomes CANCELLED with the
 *    reason of the step that failed. This first step exists for its compensation: cancelling here
 *    covers a failure at any later step.
 * 2. `reserve-stock`: takes the items from `inventory`; short stock fails for good. Compensation:
 *    gives the stock back.
 * 3. `take-payment`: charges the order's amount with the step's idempotency key; a decline fails
 *    for good. Compensation: refunds the charge.
 * 4. `confirm-order`: ACCEPTED → CONFIRMED, conditional on the version `accept-order` left.
 *
 * Steps 2 and 3 are compensated also when they themselves fail for good (`compensateOnFailure`):
 * their last attempt may have applied its effect without its answer arriving (a charge made, its
 * answer lost). Their compensations undo by the action's key, a no-op when nothing applied.
 * `order-fulfilment@1`, for the instances started before it, has the same steps without that
 * option: there `accept-order`'s compensation undoes the failed step's effect itself.
 *
 * The order's outcome, `order.confirmed.v1` or `order.cancelled.v1`, goes into the order stream
 * through the outbox, in the transaction that moves the order: an order that moved has its
 * event, and a repeated step that finds the order already moved writes none.
 */
export function orderFulfilment(
  deps: FulfilmentDeps,
  version: 1 | 2 = fulfilmentVersion,
): SagaDefinition<FulfilmentInput> {
  const { db, clock, payments } = deps;
  const now = (): Date => new Date(clock.now());
  const undoesItsOwnFailure = version >= 2 ? { compensateOnFailure: true } : {};
  return defineSaga<FulfilmentInput>({
    name: 'order-fulfilment',
    version,
    steps: [
      {
        name: 'accept-order',
        action: async ({ input }) => {
          const moved = await transitionOrder(db, input.orderId, 'PENDING', 'ACCEPTED', now());
          if (moved !== undefined) return { version: moved.version };
          // A repeat after a crash between the update and its record finds the order accepted.
          const order = await findOrder(db, input.orderId);
          if (order?.status === 'ACCEPTED') return { version: order.version };
          throw new KeelError(
            'KEEL_PERMANENT_FAILURE',
            order === undefined ? `no order ${input.orderId}` : `order is ${order.status}, not PENDING`,
          );
        },
        compensation: async ({ input, instanceId, results }) => {
          const { version } = results['accept-order'] as { version: number };
          const failure = await failureOf(db, instanceId);
          // Version 1: the step that failed for good may have applied its effect (its last attempt
          // timed out after the commit), and is not compensated itself: undo that too, by its key.
          // Either undo is a no-op when there is nothing to undo.
          if (version === 1 && failure?.step === 'reserve-stock') {
            await releaseStock(db, sagaIdempotencyKey(instanceId, 'reserve-stock', 'action'), now());
          } else if (version === 1 && failure?.step === 'take-payment') {
            await payments.refund(sagaIdempotencyKey(instanceId, 'take-payment', 'action'));
          }
          const reason = failure?.message ?? 'cancelled';
          const cancelled = await moveOrderWithOutcome(
            db,
            { id: input.orderId, version, from: 'ACCEPTED', to: 'CANCELLED', at: now(), reason },
            () =>
              orderCancelledV1.create(
                { orderId: input.orderId, customerId: input.customerId, reason },
                eventOptions(input.orderId, clock),
              ),
          );
          if (cancelled !== undefined) return;
          const order = await findOrder(db, input.orderId);
          if (order?.status === 'CANCELLED') return;
          // Changed by someone else since: an operator must look (the saga parks after retrying).
          throw new KeelError(
            'KEEL_VERSION_CONFLICT',
            `order ${input.orderId} is ${order?.status ?? 'gone'} at version ${order?.version ?? '-'}, expected ACCEPTED at ${version}`,
          );
        },
        timeoutMs: 5000,
      },
      {
        name: 'reserve-stock',
        action: ({ input, idempotencyKey }): Promise<Reservation> =>
          reserveStock(db, { id: idempotencyKey, orderId: input.orderId, items: input.items, at: now() }),
        compensation: async ({ instanceId, step }) => {
          await releaseStock(db, sagaIdempotencyKey(instanceId, step, 'action'), now());
        },
        ...undoesItsOwnFailure,
        timeoutMs: 5000,
      },
      {
        name: 'take-payment',
        action: async ({ input, results, idempotencyKey, signal }) => {
          const { amountCents } = results['reserve-stock'] as Reservation;
          const payment = await payments.charge(
            { orderId: input.orderId, customerId: input.customerId, amountCents },
            { idempotencyKey, signal },
          );
          if (payment.status === 'DECLINED') {
            throw new KeelError(
              'KEEL_PERMANENT_FAILURE',
              `payment declined: ${payment.declineReason ?? 'no reason given'}`,
            );
          }
          return { paymentId: payment.id, amountCents };
        },
        compensation: async ({ instanceId, step }) => {
          await payments.refund(sagaIdempotencyKey(instanceId, step, 'action'));
        },
        ...undoesItsOwnFailure,
        // A repeat during a crashed call's key lock (5 s) is refused as in flight: wait it out.
        retry: {
          maxAttempts: 6,
          backoff: exponentialBackoff({ initialMs: 200, maxMs: 5000, jitter: 'equal' }),
        },
        timeoutMs: 10_000,
      },
      {
        name: 'confirm-order',
        action: async ({ input, results }) => {
          const { version } = results['accept-order'] as { version: number };
          const { amountCents } = results['take-payment'] as { amountCents: number };
          const confirmed = await moveOrderWithOutcome(
            db,
            { id: input.orderId, version, from: 'ACCEPTED', to: 'CONFIRMED', at: now() },
            () =>
              orderConfirmedV1.create(
                { orderId: input.orderId, customerId: input.customerId, amountCents },
                eventOptions(input.orderId, clock),
              ),
          );
          if (confirmed !== undefined) return { version: confirmed.version };
          const order = await findOrder(db, input.orderId);
          if (order?.status === 'CONFIRMED') return { version: order.version };
          throw new KeelError(
            'KEEL_PERMANENT_FAILURE',
            `order changed meanwhile: ${order?.status ?? 'gone'} at version ${order?.version ?? '-'}`,
          );
        },
        timeoutMs: 5000,
      },
    ],
  });
}

/** Starts the order's fulfilment in the caller's transaction (the consumer's, with its inbox record). */
export function startFulfilment(
  tx: Queryable,
  saga: SagaDefinition<FulfilmentInput>,
  input: FulfilmentInput,
  clock: Clock,
): Promise<{ id: string; created: boolean }> {
  return startSaga(tx, saga, input, { id: fulfilmentId(input.orderId), clock });
}

/** Keyed by the order (one partition keeps its events in order), in the step's trace. */
function eventOptions(
  orderId: string,
  clock: Clock,
): { key: string; headers: Record<string, string>; clock: Clock } {
  return { key: orderId, headers: injectTraceHeaders(), clock };
}

/**
 * Moves the order, if it is still at the version, and writes its outcome event into the order
 * stream's outbox in the same transaction. Undefined, and no event, when it had moved meanwhile.
 */
function moveOrderWithOutcome(
  db: Db,
  change: Parameters<typeof transitionOrderAtVersion>[1],
  outcome: () => Envelope,
): Promise<Order | undefined> {
  return db.transaction(async (tx) => {
    const moved = await transitionOrderAtVersion(tx, change);
    if (moved !== undefined) await tracedAddToOutbox(tx, orderEventsStream, outcome());
    return moved;
  });
}

/** The failure that started the compensation: the step and the order's cancellation reason. */
async function failureOf(db: Db, instanceId: string): Promise<StoredError | null> {
  // A step's context carries the input and the results, not the failure: read it from the instance.
  const { instance } = await getSaga(db, instanceId);
  return instance.failure;
}
