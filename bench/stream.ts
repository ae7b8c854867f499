// bench/stream: what keel's PostgreSQL stream (PgStream) costs beside the same log written and
// read by hand with the driver.
//
// Method: one process, one database (PGlite by default, KEEL_DB=pg for the server at
// DATABASE_URL), both sides in one schema, each on a table of its own with the same columns and
// primary key. BENCH_CONCURRENCY closed loops append BENCH_APPENDS envelopes to one stream,
// BENCH_BATCH per append (1: what a relay publishing one event at a time pays; the relay's
// batches are larger). The hand-rolled side is the usual gap-free recipe run through the same Db:
// `pg_advisory_xact_lock(hashtext(stream))`, then `INSERT … SELECT max(position) + n` in one
// transaction. keel's side is `PgStream.publish` (the head row's lock, one statement, and a
// NOTIFY after the commit). Then each side reads its whole log back in pages of 100 from
// position 0 (a replay). Then each side deletes its whole log (retention): keel's
// `PgStream.trim(name, { keepLast: 0 })` (batches of 1 000, each taking the stream's cleaner lock
// and moving its first position, so readers know where it starts) beside one hand-written
// `DELETE … WHERE stream = $1` (no batches, no record of where the log starts: the floor).
// Rounds alternate the sides after a warm-up; each figure is the best round.
import { migrate, type Db } from '../src/db/index.ts';
import { createEnvelope, PgStream, pgStreamMigrations, type Envelope } from '../src/messaging/index.ts';
import { createTestDb, testDbBackend } from '../src/testing/index.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const appends = Number(process.env.BENCH_APPENDS ?? 2000);
const batch = Number(process.env.BENCH_BATCH ?? 1);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const pageSize = 100;

type Side = 'keel' | 'hand-rolled';

const handAppend = `INSERT INTO hand_stream (stream, position, id, type, key, payload, headers, occurred_at, hlc)
  SELECT $1, coalesce((SELECT max(position) FROM hand_stream WHERE stream = $1), 0) + e.ord,
         (e.doc->>'id')::uuid, e.doc->>'type', e.doc->>'key', e.doc->'payload', e.doc->'headers',
         (e.doc->>'occurredAt')::timestamptz, e.doc->>'hlc'
  FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(doc, ord)`;

const handRead = `SELECT position::text AS p, id, type, key, payload, headers, occurred_at, hlc
  FROM hand_stream WHERE stream = $1 AND position > $2 ORDER BY stream, position LIMIT $3`;

function envelopes(n: number): Envelope[] {
  return Array.from({ length: n }, (_, i) =>
    createEnvelope({
      type: 'order.placed.v1',
      key: `k${i}`,
      payload: { orderId: `o${i}`, items: [{ sku: 'book-1' }] },
    }),
  );
}

async function appendAll(db: Db, stream: PgStream, side: Side, name: string, total: number): Promise<number> {
  let left = Math.ceil(total / batch);
  const loop = async (): Promise<void> => {
    while (left-- > 0) {
      const messages = envelopes(batch);
      if (side === 'keel') await stream.publish(name, messages);
      else
        await db.transaction(async (tx) => {
          await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [name]);
          await tx.query(handAppend, [name, JSON.stringify(messages)]);
        });
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, loop));
  return (Math.ceil(total / batch) * batch) / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function readAll(
  db: Db,
  stream: PgStream,
  side: Side,
  name: string,
): Promise<{ rate: number; read: number }> {
  const start = process.hrtime.bigint();
  let after = 0;
  let read = 0;
  for (;;) {
    let got: number;
    if (side === 'keel') {
      const page = await stream.read(name, { after, limit: pageSize });
      got = page.length;
      if (got > 0) after = page[got - 1]!.position;
    } else {
      const { rows } = await db.query<{ p: string }>(handRead, [name, after, pageSize]);
      got = rows.length;
      if (got > 0) after = Number(rows[got - 1]!.p);
    }
    read += got;
    if (got < pageSize) break;
  }
  return { rate: read / (Number(process.hrtime.bigint() - start) / 1e9), read };
}

/** Deletes the whole log `name`; returns entries deleted per second. */
async function trimAll(
  db: Db,
  stream: PgStream,
  side: Side,
  name: string,
  expected: number,
): Promise<number> {
  const start = process.hrtime.bigint();
  const deleted =
    side === 'keel'
      ? await stream.trim(name, { keepLast: 0 })
      : (await db.query('DELETE FROM hand_stream WHERE stream = $1', [name])).rowCount;
  if (deleted !== expected) throw new Error(`${side} trimmed ${deleted} entries of ${expected}`);
  return deleted / (Number(process.hrtime.bigint() - start) / 1e9);
}

export default async function main(): Promise<void> {
  const backend = testDbBackend();
  const db = await createTestDb({ trackStatements: false, checkNestedUse: false, poolSize: concurrency + 2 });
  try {
    await migrate(db, [
      ...pgStreamMigrations,
      {
        id: 'bench_hand_stream',
        sql: `CREATE TABLE hand_stream (stream text NOT NULL, position bigint NOT NULL, id uuid NOT NULL,
          type text NOT NULL, key text, payload jsonb NOT NULL, headers jsonb NOT NULL, occurred_at timestamptz NOT NULL,
          hlc text, appended_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, position))`,
      },
    ]);
    const stream = new PgStream(db);
    console.log(
      `stream on ${backend}: ${appends} envelopes per round, ${batch} per append, ${concurrency} appenders, ${rounds} rounds`,
    );
    const sides: Side[] = ['keel', 'hand-rolled'];
    for (const side of sides) await appendAll(db, stream, side, `warm-${side}`, Math.min(appends, 200));
    const bestAppend = new Map<Side, number>(sides.map((s) => [s, 0]));
    const bestRead = new Map<Side, number>(sides.map((s) => [s, 0]));
    const bestTrim = new Map<Side, number>(sides.map((s) => [s, 0]));
    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      for (const side of sides) {
        const name = `round-${round}-${side}`;
        const appended = await appendAll(db, stream, side, name, appends);
        const { rate, read } = await readAll(db, stream, side, name);
        if (read !== Math.ceil(appends / batch) * batch) throw new Error(`${side} read ${read} entries back`);
        bestAppend.set(side, Math.max(bestAppend.get(side)!, appended));
        bestRead.set(side, Math.max(bestRead.get(side)!, rate));
        const trimmed = await trimAll(db, stream, side, name, read);
        bestTrim.set(side, Math.max(bestTrim.get(side)!, trimmed));
        line.push(
          `${side} append ${appended.toFixed(0)} msg/s, replay ${rate.toFixed(0)} msg/s, trim ${trimmed.toFixed(0)} entries/s`,
        );
      }
      console.log(`  round ${round}: ${line.join('; ')}`);
    }
    const [ka, ha, kr, hr] = [
      bestAppend.get('keel')!,
      bestAppend.get('hand-rolled')!,
      bestRead.get('keel')!,
      bestRead.get('hand-rolled')!,
    ];
    console.log(
      `bench: stream appends per second, ${batch} per append, ${concurrency} appenders, ${backend} (higher is better) | keel ${ka.toFixed(0)} msg/s | hand-rolled ${ha.toFixed(0)} msg/s | ratio ${(ka / ha).toFixed(2)}`,
    );
    console.log(
      `bench: stream replay, entries read per second in pages of ${pageSize}, ${backend} (higher is better) | keel ${kr.toFixed(0)} msg/s | hand-rolled ${hr.toFixed(0)} msg/s | ratio ${(kr / hr).toFixed(2)}`,
    );
    const [kt, ht] = [bestTrim.get('keel')!, bestTrim.get('hand-rolled')!];
    console.log(
      `bench: stream trim of the whole log, entries deleted per second, ${backend} (higher is better) | keel ${kt.toFixed(0)} entries/s | hand-rolled DELETE ${ht.toFixed(0)} entries/s | ratio ${(kt / ht).toFixed(2)}`,
    );
  } finally {
    await db.close();
  }
}
