import type { Queryable } from '../db/db.ts';
import { getSaga, type SagaInstance, type SagaRunner, type SagaState } from '../saga/index.ts';

const endStates: readonly SagaState[] = ['COMPLETED', 'COMPENSATED', 'NEEDS_ATTENTION'];

/**
 * Resolves with saga instance `id` once it has ended (COMPLETED, COMPENSATED or
 * NEEDS_ATTENTION), from `runner`'s events: no sleeping, no polling. The listener is registered
 * before the instance is read, so one that ended already is found too. `signal` gives up.
 */
export async function sagaEnded(
  runner: SagaRunner,
  db: Queryable,
  id: string,
  signal?: AbortSignal,
): Promise<SagaInstance> {
  const stop = new AbortController();
  signal?.addEventListener('abort', () => stop.abort(signal.reason), { once: true });
  const ended = runner.events.once('saga-state', {
    filter: (event) => event.instanceId === id && endStates.includes(event.to),
    signal: stop.signal,
  });
  const now = await getSaga(db, id).then(
    ({ instance }) => instance,
    () => undefined,
  );
  if (now !== undefined && endStates.includes(now.state)) {
    stop.abort();
    await ended.catch(() => undefined);
    return now;
  }
  await ended;
  return (await getSaga(db, id)).instance;
}
