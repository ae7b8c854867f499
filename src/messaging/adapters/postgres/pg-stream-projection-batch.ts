// One batch of a ProjectionRunner (pg-stream-projection.ts): the transaction that locks the
// stored position, applies the entries after it and moves it.
import type { Tx } from '../../../db/db.ts';
import type { Projection } from '../../projection.ts';
import type { PgStream, StreamEntry } from './pg-stream.ts';
import { ProjectionNotFoundError } from './pg-stream-projection-admin.ts';

/** A move of the stored position: from `from` to `to`, over `count` entries. */
export interface PositionMove {
  from: number;
  to: number;
  count: number;
}

/** What a batch's transaction did: entries it passed over after a trim, entries it applied. */
export interface BatchOutcome {
  skipped: PositionMove | undefined;
  applied: PositionMove | undefined;
}

/** What a batch needs of its runner. */
export interface BatchContext {
  readonly projection: string;
  readonly stream: string;
  readonly reader: PgStream;
  readonly handler: Projection<StreamEntry>;
  readonly batchSize: number;
  readonly onTrimmed: 'throw' | 'resume';
  /** The drain deadline of a stop, once `stop()` was called: past it a batch in flight is handed back. */
  drain(): AbortSignal | undefined;
}

// A batch's lock: never creates the row. The runner stored it before its first batch, so a row
// missing here was forgotten (`PgStream.forgetProjection`) since; creating it again, at 0, would
// replay the stream into the model and undo the forget without anyone knowing.
const lockStoredPosition = `SELECT position::text FROM keel_stream_positions
  WHERE projection = $1 AND stream = $2 FOR UPDATE`;

/**
 * One batch, in `tx`: locks the stored position, reads the entries after it, applies them and
 * moves the position; undefined when it moved nothing. `onApplyThrew` is called when the
 * projection's `apply` throws, before the error goes on. Past the drain deadline it throws the
 * drain's reason once `apply` returns, and the batch rolls back.
 */
export async function applyBatch(
  context: BatchContext,
  tx: Tx,
  onApplyThrew: () => void,
): Promise<BatchOutcome | undefined> {
  const { projection, stream, reader, onTrimmed } = context;
  const { rows } = await tx.query<{ position: string }>(lockStoredPosition, [projection, stream]);
  if (rows[0] === undefined) throw new ProjectionNotFoundError(stream, projection, 'apply');
  const from = Number(rows[0].position);
  const entries = await reader.read(stream, { after: from, limit: context.batchSize, onTrimmed }, tx);
  // Past `from` only with 'resume', after a trim: the page starts later, or nothing is left.
  let start = from;
  if (entries.length > 0) start = entries[0]!.position - 1;
  else if (onTrimmed === 'resume') start = Math.max(from, (await reader.bounds(stream, tx)).first - 1);
  const skipped = start > from ? { from, to: start, count: start - from } : undefined;
  if (entries.length > 0) {
    try {
      await context.handler.apply(entries, tx);
    } catch (error) {
      onApplyThrew();
      throw error;
    }
  }
  // Past the drain deadline the batch is handed back: stop() has resolved, so nothing may commit
  // after it; the next start (or catchUp()) applies the batch again.
  context.drain()?.throwIfAborted();
  const to = entries.at(-1)?.position ?? start;
  if (to === from) return undefined;
  await tx.query(
    'UPDATE keel_stream_positions SET position = $3, updated_at = now() WHERE projection = $1 AND stream = $2',
    [projection, stream, to],
  );
  const applied = entries.length > 0 ? { from: start, to, count: entries.length } : undefined;
  return { skipped, applied };
}
