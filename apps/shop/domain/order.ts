/**
 * An order's life: placed as PENDING; ACCEPTED when a worker starts its fulfilment saga's first
 * step; then CONFIRMED (stock reserved, payment taken) or CANCELLED with a reason (a step failed
 * for good and the saga's compensations ran).
 */
export type OrderStatus = 'PENDING' | 'ACCEPTED' | 'CONFIRMED' | 'CANCELLED';

export interface OrderItem {
  readonly sku: string;
  readonly quantity: number;
}

export interface Order {
  readonly id: string;
  readonly customerId: string;
  readonly items: readonly OrderItem[];
  readonly status: OrderStatus;
  /** Why a CANCELLED order was cancelled; absent otherwise. */
  readonly reason?: string;
  /** Incremented on every change: the basis of conditional writes. */
  readonly version: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** The transitions an order may take; anything else is refused. */
const transitions: Record<OrderStatus, readonly OrderStatus[]> = {
  PENDING: ['ACCEPTED', 'CANCELLED'],
  ACCEPTED: ['CONFIRMED', 'CANCELLED'],
  CONFIRMED: [],
  CANCELLED: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return transitions[from].includes(to);
}
