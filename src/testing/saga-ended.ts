import type { Queryable } from '../db/db.ts';
import { waitForSaga, type SagaInstance, type SagaRunner } from '../saga/index.ts';

/**
 * Resolves with saga instance `id` once it has ended (COMPLETED, COMPENSATED or
 * NEEDS_ATTENTION): `waitForSaga` woken by `runner`'s events, so a test needs no sleep and no
 * manual clock for it. One that ended already is found too, and so is one not started yet when
 * this is called. `signal` gives up. Outside tests, call `waitForSaga` from keel/saga.
 */
export function sagaEnded(
  runner: SagaRunner,
  db: Queryable,
  id: string,
  signal?: AbortSignal,
): Promise<SagaInstance> {
  return waitForSaga(db, id, { runner, ...(signal === undefined ? {} : { signal }) });
}
