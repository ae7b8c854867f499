// A TypeScript project that installed keel from its npm package: the package test type-checks
// this file (strict, NodeNext) against the package's declarations. Not run.
import { migrate, openPgliteDb, type Db } from 'keel/db';
import { KeelError } from 'keel/errors';
import { createEnvelope, type Envelope, type Publisher } from 'keel/messaging';
import { OutboxRelay, addToOutbox, outboxMigrations } from 'keel/outbox';
import { circuitBreaker, pipeline, retry, timeout, type ExecuteContext } from 'keel/resilience';
import { ManualClock } from 'keel/time';

export async function placeOrder(db: Db, id: string): Promise<void> {
  await migrate(db, outboxMigrations);
  await db.transaction(async (tx) => {
    await tx.query('INSERT INTO orders (id) VALUES ($1)', [id]);
    const event: Envelope<{ id: string }> = createEnvelope({
      type: 'order.placed.v1',
      payload: { id },
      key: id,
    });
    await addToOutbox(tx, 'orders', event);
  });
}

export async function relayAll(publisher: Publisher): Promise<number> {
  const db = await openPgliteDb();
  try {
    return await new OutboxRelay(db, publisher).relayOnce();
  } finally {
    await db.close();
  }
}

export async function stockLevel(fetchLevel: (context: ExecuteContext) => Promise<number>): Promise<number> {
  const clock = new ManualClock();
  const policy = pipeline(
    retry({ maxAttempts: 3, clock }),
    circuitBreaker({ clock }),
    timeout(300, { clock }),
  );
  const level: number = await policy.execute(fetchLevel);
  // @ts-expect-error the declarations carry the operation's type: a number is not a string
  const wrong: string = await policy.execute(fetchLevel);
  return level + wrong.length;
}

export function codeOf(error: unknown): string | undefined {
  return error instanceof KeelError ? error.code : undefined;
}
