import type { CircuitState } from '../../../src/resilience/index.ts';
import type { Payment } from '../storage/payments-store.ts';
import type { ChargeRequest } from './payment-provider.ts';

/** A breaker as a dashboard reads it: a stable name and the state at the moment of reading. */
export interface NamedBreaker {
  readonly name: string;
  readonly state: CircuitState;
}

/**
 * What the fulfilment saga charges and refunds: the in-process `PaymentProvider`, or
 * `HttpPaymentProvider`, the client of the provider service. Called by the saga's steps,
 * concurrently for different orders; nothing to close.
 */
export interface Payments {
  /**
   * Charges once per `idempotencyKey`: a repeat with the key (after a timeout, a crash, a retried
   * step) gets the first outcome and charges nothing more. A decline is an outcome
   * (`status: 'DECLINED'`), not an error. Rejects with a `KeelError` when the outcome is unknown
   * (the provider failed, stalled or is out of reach): the caller repeats with the same key.
   * Stops when `signal` aborts.
   */
  charge(request: ChargeRequest, call: { idempotencyKey: string; signal?: AbortSignal }): Promise<Payment>;
  /**
   * Refunds the charge made with `chargeKey`. True when this call refunded it; false when it was
   * refunded already, declined, or never made. Safe to repeat.
   */
  refund(chargeKey: string, call?: { signal?: AbortSignal }): Promise<boolean>;
  /** The circuit breaker in front of a remote provider; none for the in-process one. */
  readonly breaker?: NamedBreaker;
}
