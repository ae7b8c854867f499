import type { Queryable } from '../../../src/db/index.ts';

export type PaymentStatus = 'CHARGED' | 'DECLINED' | 'REFUNDED';

export interface Payment {
  id: string;
  idempotencyKey: string;
  orderId: string;
  customerId: string;
  amountCents: number;
  status: PaymentStatus;
  declineReason: string | null;
}

interface PaymentRow {
  id: string;
  idempotency_key: string;
  order_id: string;
  customer_id: string;
  amount_cents: number;
  status: PaymentStatus;
  decline_reason: string | null;
}

const columns =
  'id::text AS id, idempotency_key, order_id::text AS order_id, customer_id, amount_cents, status, decline_reason';

/**
 * Records a payment under its idempotency key, or returns the one already recorded under it:
 * the ledger itself never holds two rows for one key, whatever happened to the caller.
 */
export async function recordPayment(q: Queryable, payment: Payment, at: Date): Promise<Payment> {
  const inserted = await q.query<PaymentRow>(
    `INSERT INTO payments (id, idempotency_key, order_id, customer_id, amount_cents, status, decline_reason, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING ${columns}`,
    [
      payment.id,
      payment.idempotencyKey,
      payment.orderId,
      payment.customerId,
      payment.amountCents,
      payment.status,
      payment.declineReason,
      at,
    ],
  );
  if (inserted.rows[0] !== undefined) return toPayment(inserted.rows[0]);
  // A separate statement: the conflicting row may have committed after the insert's snapshot.
  const { rows } = await q.query<PaymentRow>(`SELECT ${columns} FROM payments WHERE idempotency_key = $1`, [
    payment.idempotencyKey,
  ]);
  return toPayment(rows[0]!);
}

/** Marks a charged payment refunded; a second refund, or one of no charge, changes nothing. */
export async function refundPayment(q: Queryable, idempotencyKey: string, at: Date): Promise<boolean> {
  const { rows } = await q.query(
    `UPDATE payments SET status = 'REFUNDED', refunded_at = $2
     WHERE idempotency_key = $1 AND status = 'CHARGED' RETURNING id`,
    [idempotencyKey, at],
  );
  return rows.length > 0;
}

export async function paymentsOf(q: Queryable, orderId: string): Promise<Payment[]> {
  const { rows } = await q.query<PaymentRow>(
    `SELECT ${columns} FROM payments WHERE order_id = $1 ORDER BY created_at, id`,
    [orderId],
  );
  return rows.map(toPayment);
}

function toPayment(row: PaymentRow): Payment {
  return {
    id: row.id,
    idempotencyKey: row.idempotency_key,
    orderId: row.order_id,
    customerId: row.customer_id,
    amountCents: row.amount_cents,
    status: row.status,
    declineReason: row.decline_reason,
  };
}
