import type { Db } from '../../../src/db/index.ts';
import {
  createIdempotent,
  PostgresIdempotencyStore,
  type Idempotent,
} from '../../../src/idempotency/index.ts';
import { systemClock, type Clock, uuidv7At } from '../../../src/time/index.ts';
import { recordPayment, refundPayment, type Payment } from '../storage/payments-store.ts';
import type { Payments } from './payments.ts';

export interface ChargeRequest {
  orderId: string;
  customerId: string;
  amountCents: number;
}

export interface PaymentProviderOptions {
  clock?: Clock;
  /**
   * The reason to decline a charge, or undefined to take it. Default: customers whose id starts
   * with `declined-` are declined ("card declined"), so the saga's compensation can be tried.
   */
  decline?: (charge: ChargeRequest) => string | undefined;
  /** How long a charge in progress holds its key before a repeat may take over. Default 5 000 ms. */
  lockMs?: number;
}

const declinedPrefix = 'declined-';

/**
 * The shop's payment provider: a small ledger (`payments`) behind the API a real provider has —
 * every charge carries an idempotency key, and a repeated charge with the key returns the first
 * outcome and charges nothing more. The keys are kept by `createIdempotent` in keel's idempotency
 * table; the ledger's unique key covers a crash between the charge and that record. A decline is
 * an outcome (`status: 'DECLINED'`), not an error: it is replayed like a charge.
 */
export class PaymentProvider implements Payments {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #decline: (charge: ChargeRequest) => string | undefined;
  readonly #idempotent: Idempotent;

  constructor(db: Db, options: PaymentProviderOptions = {}) {
    this.#db = db;
    this.#clock = options.clock ?? systemClock;
    this.#decline =
      options.decline ??
      ((charge) => (charge.customerId.startsWith(declinedPrefix) ? 'card declined' : undefined));
    this.#idempotent = createIdempotent({
      store: new PostgresIdempotencyStore(db, { clock: this.#clock }),
      scope: 'shop.payments.charge',
      lockMs: options.lockMs ?? 5000,
      clock: this.#clock,
    });
  }

  /** Charges once per `idempotencyKey`; a repeat gets the first outcome. */
  charge(request: ChargeRequest, call: { idempotencyKey: string; signal?: AbortSignal }): Promise<Payment> {
    return this.#idempotent(
      call.idempotencyKey,
      () => {
        const declined = this.#decline(request);
        return recordPayment(
          this.#db,
          {
            id: uuidv7At(this.#clock.now()),
            idempotencyKey: call.idempotencyKey,
            orderId: request.orderId,
            customerId: request.customerId,
            amountCents: request.amountCents,
            status: declined === undefined ? 'CHARGED' : 'DECLINED',
            declineReason: declined ?? null,
          },
          new Date(this.#clock.now()),
        );
      },
      {
        // The same key for another charge is a caller's bug: KEEL_IDEMPOTENCY_KEY_REUSED.
        fingerprint: `${request.orderId}:${request.customerId}:${request.amountCents}`,
        ...(call.signal === undefined ? {} : { signal: call.signal }),
      },
    );
  }

  /** Refunds the charge made with `chargeKey`, once; refunding a decline or nothing changes nothing. */
  refund(chargeKey: string): Promise<boolean> {
    return refundPayment(this.#db, chargeKey, new Date(this.#clock.now()));
  }
}
