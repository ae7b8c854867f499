// The orders bench's client: POST /v1/orders over `concurrency` keep-alive closed loops, each
// sending its next request when the previous answer has arrived. The same code runs in the
// bench's own process or in a process of its own (client-process.ts).
import { randomUUID } from 'node:crypto';

export interface LoadRequest {
  address: string;
  total: number;
  concurrency: number;
  /** A fresh Idempotency-Key on every request (the shop requires one; the plain endpoint ignores it). */
  withKey: boolean;
}

export interface LoadResult {
  /** From the first request sent to the last answer read. */
  seconds: number;
  /** Answers other than 202. */
  failed: number;
}

const body = JSON.stringify({ customerId: 'c-1', items: [{ sku: 'book-1', quantity: 2 }] });

export async function postOrders({ address, total, concurrency, withKey }: LoadRequest): Promise<LoadResult> {
  let sent = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (sent < total) {
      sent++;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (withKey) headers['idempotency-key'] = randomUUID();
      const response = await fetch(`${address}/v1/orders`, { method: 'POST', headers, body });
      await response.arrayBuffer();
      if (response.status !== 202) failed++;
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, failed };
}
