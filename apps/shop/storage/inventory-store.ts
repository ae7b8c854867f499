import type { Db, Queryable } from '../../../src/db/index.ts';
import { KeelError } from '../../../src/errors/index.ts';
import type { OrderItem } from '../domain/order.ts';

/** What a reservation took: the quantities per SKU and what they cost. */
export interface Reservation {
  items: { sku: string; quantity: number }[];
  amountCents: number;
}

/**
 * Takes the order's items from stock in one transaction, recorded under `id` (the saga step's
 * idempotency key): a repeated call finds the reservation and takes nothing again. Stock that is
 * short, or a SKU the shop does not sell, fails for good (`KEEL_PERMANENT_FAILURE`) and takes nothing.
 */
export async function reserveStock(
  db: Db,
  reservation: { id: string; orderId: string; items: readonly OrderItem[]; at: Date },
): Promise<Reservation> {
  // One row per SKU, in SKU order, so two reservations lock their rows in the same order.
  const wanted = new Map<string, number>();
  for (const item of reservation.items) wanted.set(item.sku, (wanted.get(item.sku) ?? 0) + item.quantity);
  const items = [...wanted]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([sku, quantity]) => ({ sku, quantity }));
  return db.transaction(async (tx) => {
    // Inserted first: a concurrent repeat of the same key waits on this row, then finds it.
    const inserted = await tx.query(
      `INSERT INTO stock_reservations (id, order_id, items, amount_cents, reserved_at)
       VALUES ($1, $2, $3::jsonb, 0, $4) ON CONFLICT (id) DO NOTHING RETURNING id`,
      [reservation.id, reservation.orderId, JSON.stringify(items), reservation.at],
    );
    if (inserted.rows.length === 0) {
      const { rows } = await tx.query<{ items: Reservation['items']; amount_cents: number }>(
        `SELECT items, amount_cents FROM stock_reservations WHERE id = $1`,
        [reservation.id],
      );
      return { items: rows[0]!.items, amountCents: rows[0]!.amount_cents };
    }
    let amountCents = 0;
    for (const { sku, quantity } of items) {
      const { rows } = await tx.query<{ price_cents: number }>(
        `UPDATE inventory SET available = available - $2 WHERE sku = $1 AND available >= $2
         RETURNING price_cents`,
        [sku, quantity],
      );
      if (rows[0] === undefined) {
        const left = await stockOf(tx, sku);
        throw new KeelError(
          'KEEL_PERMANENT_FAILURE',
          left === undefined
            ? `no such product: ${sku}`
            : `out of stock: ${sku} (${left} available, ${quantity} ordered)`,
          { details: { sku, available: left ?? 0, ordered: quantity } },
        );
      }
      amountCents += rows[0].price_cents * quantity;
    }
    await tx.query(`UPDATE stock_reservations SET amount_cents = $2 WHERE id = $1`, [
      reservation.id,
      amountCents,
    ]);
    return { items, amountCents };
  });
}

/**
 * Gives a reservation's stock back, once: a repeated call, or one for a reservation that never
 * happened, changes nothing. Returns whether stock went back.
 */
export async function releaseStock(db: Db, id: string, at: Date): Promise<boolean> {
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<{ items: Reservation['items'] }>(
      `UPDATE stock_reservations SET released_at = $2 WHERE id = $1 AND released_at IS NULL RETURNING items`,
      [id, at],
    );
    if (rows[0] === undefined) return false;
    for (const { sku, quantity } of rows[0].items) {
      await tx.query(`UPDATE inventory SET available = available + $2 WHERE sku = $1`, [sku, quantity]);
    }
    return true;
  });
}

/** Units of `sku` in stock, or undefined when the shop does not sell it. */
export async function stockOf(q: Queryable, sku: string): Promise<number | undefined> {
  const { rows } = await q.query<{ available: number }>(`SELECT available FROM inventory WHERE sku = $1`, [
    sku,
  ]);
  return rows[0]?.available;
}
