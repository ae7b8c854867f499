/** An order's life: placed as PENDING, then ACCEPTED by the worker (the saga deepens this later). */
export type OrderStatus = 'PENDING' | 'ACCEPTED' | 'CANCELLED';

export interface OrderItem {
  readonly sku: string;
  readonly quantity: number;
}

export interface Order {
  readonly id: string;
  readonly customerId: string;
  readonly items: readonly OrderItem[];
  readonly status: OrderStatus;
  /** Incremented on every change: the basis of conditional writes. */
  readonly version: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** The transitions an order may take; anything else is refused. */
const transitions: Record<OrderStatus, readonly OrderStatus[]> = {
  PENDING: ['ACCEPTED', 'CANCELLED'],
  ACCEPTED: [],
  CANCELLED: [],
};

export function canTransition(from: OrderStatus, to: OrderStatus): boolean {
  return transitions[from].includes(to);
}
