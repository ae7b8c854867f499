// Set-up the PostgreSQL stream's test files share.
import { migrate } from '../../../db/index.ts';
import { createTestDb, type TestDb } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope, type Envelope } from '../../envelope.ts';
import { PgStream } from './pg-stream.ts';
import { pgStreamMigrations } from './pg-stream-schema.ts';

/**
 * A test database with the stream's tables, and `model` when its CREATE TABLE is given (a read
 * model whose primary key turns a second application of an entry into an error); closed by the
 * file's `cleanups`.
 */
export async function openTestStream(
  cleanups: (() => Promise<void>)[],
  model?: string,
): Promise<{ db: TestDb; stream: PgStream; clock: ManualClock }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, [...pgStreamMigrations, ...(model === undefined ? [] : [{ id: 'model', sql: model }])]);
  return { db, stream: new PgStream(db), clock: new ManualClock() };
}

/** `count` envelopes of `type`, numbered in their payload's `n`. */
export function countedEvents(count: number, type = 'thing.happened.v1'): Envelope[] {
  return Array.from({ length: count }, (_, n) => createEnvelope({ type, payload: { n } }));
}
