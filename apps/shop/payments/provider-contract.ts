import { z } from 'zod';

/**
 * The payment provider's HTTP contract, shared by the service and its client.
 *
 * - `POST /v1/charges` with `Idempotency-Key` and a `chargeRequest` body: `200` with the payment
 *   when charged, `402` with the payment when declined; a repeat with the key answers the same.
 * - `POST /v1/refunds` with a `refundRequest` body: `200` with `{ refunded }`.
 * - Errors are problem+json with keel's `code`; `503` is the provider failing (retry with the key).
 */
export const chargesPath = '/v1/charges';
export const refundsPath = '/v1/refunds';

export const chargeRequest = z.strictObject({
  orderId: z.uuid(),
  customerId: z.string().min(1).max(128),
  amountCents: z.number().int().min(1).max(100_000_000),
});

export const refundRequest = z.strictObject({
  /** The `Idempotency-Key` the charge was made with. */
  chargeKey: z.string().min(1).max(255),
});

export const paymentResponse = z.object({
  id: z.string().min(1),
  idempotencyKey: z.string().min(1),
  orderId: z.string().min(1),
  customerId: z.string(),
  amountCents: z.number().int(),
  status: z.enum(['CHARGED', 'DECLINED', 'REFUNDED']),
  declineReason: z.string().nullable(),
});

export const refundResponse = z.object({ refunded: z.boolean() });
