import { preparedStatement, writeWithoutWaiting, type Queryable } from '../../../src/db/index.ts';
import type { Order, OrderItem, OrderStatus } from '../domain/order.ts';

interface OrderRow {
  id: string;
  customer_id: string;
  status: OrderStatus;
  reason: string | null;
  items: OrderItem[];
  version: number;
  created_at: Date | string;
  updated_at: Date | string;
}

const columns = 'id::text AS id, customer_id, status, reason, items, version, created_at, updated_at';

// Prepared on pg (parsed and planned once per connection): an insert's plan cannot go stale.
const insertOrderSql = preparedStatement(
  `INSERT INTO orders (id, customer_id, status, items, version, created_at, updated_at)
   VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)`,
);

/** In a keel transaction the insert goes out with the next statement or the COMMIT (see writeWithoutWaiting). */
export async function insertOrder(tx: Queryable, order: Order): Promise<void> {
  await writeWithoutWaiting(tx, insertOrderSql, [
    order.id,
    order.customerId,
    order.status,
    JSON.stringify(order.items),
    order.version,
    order.createdAt,
    order.updatedAt,
  ]);
}

export async function findOrder(db: Queryable, id: string): Promise<Order | undefined> {
  const { rows } = await db.query<OrderRow>(`SELECT ${columns} FROM orders WHERE id = $1`, [id]);
  return rows[0] === undefined ? undefined : toOrder(rows[0]);
}

/**
 * Moves an order from one status to another only if it is still in `from`: a redelivered
 * message finds it already moved and changes nothing. Returns the order when it moved.
 */
export async function transitionOrder(
  tx: Queryable,
  id: string,
  from: OrderStatus,
  to: OrderStatus,
  at: Date,
): Promise<Order | undefined> {
  const { rows } = await tx.query<OrderRow>(
    `UPDATE orders SET status = $3, version = version + 1, updated_at = $4
     WHERE id = $1 AND status = $2
     RETURNING ${columns}`,
    [id, from, to, at],
  );
  return rows[0] === undefined ? undefined : toOrder(rows[0]);
}

/**
 * Moves an order that is still at `version` (and in `from`) to `to`, with a reason for a
 * cancellation: the conditional write a saga step makes with the version an earlier step saw.
 * Returns the order when it moved, undefined when it had changed meanwhile.
 */
export async function transitionOrderAtVersion(
  tx: Queryable,
  change: { id: string; version: number; from: OrderStatus; to: OrderStatus; at: Date; reason?: string },
): Promise<Order | undefined> {
  const { rows } = await tx.query<OrderRow>(
    `UPDATE orders SET status = $4, reason = $5, version = version + 1, updated_at = $6
     WHERE id = $1 AND version = $2 AND status = $3
     RETURNING ${columns}`,
    [change.id, change.version, change.from, change.to, change.reason ?? null, change.at],
  );
  return rows[0] === undefined ? undefined : toOrder(rows[0]);
}

function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    customerId: row.customer_id,
    status: row.status,
    ...(row.reason === null ? {} : { reason: row.reason }),
    items: row.items,
    version: row.version,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}
