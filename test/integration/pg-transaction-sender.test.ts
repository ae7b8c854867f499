// PgTransactionSender and PgStatementBatch against the real server: what a transaction sends in
// one turn goes behind one Sync and is answered statement by statement, in order; a failure
// answers the failing statement with its error and those after it with 25P02, and leaves the
// connection usable; a prepared statement is parsed once, on its own, then bound by name; a
// script without parameters goes on its own, in its place.
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultDatabaseUrl } from '../../src/db/open-db.ts';
import { PgTransactionSender } from '../../src/db/pg-transaction-sender.ts';
import { preparedStatement, preparedStatementName } from '../../src/db/prepared-statements.ts';
import { testDbBackend } from '../../src/testing/db.ts';
import { uniqueSchemaName } from '../../src/testing/index.ts';
import { propertyRuns } from '../../src/testing/property-runs.ts';

const pgPass = testDbBackend() === 'pg';
const url = process.env.DATABASE_URL?.trim() || defaultDatabaseUrl;
const schema = uniqueSchemaName('sender');

type Row = Record<string, unknown>;

interface Labelled {
  seq?: string;
  label: string;
}

describe.skipIf(!pgPass)('PgTransactionSender (runs in the KEEL_DB=pg pass only)', () => {
  let pool: pg.Pool;

  beforeAll(async () => {
    pool = new pg.Pool({
      connectionString: url,
      max: 2,
      pipeline: true,
      options: `-c search_path=${schema}`,
    });
    await pool.query(`CREATE SCHEMA ${schema}`);
    await pool.query(`CREATE TABLE ${schema}.events (seq bigserial PRIMARY KEY, label text NOT NULL)`);
    await pool.query(`CREATE TABLE ${schema}.runs (run text NOT NULL, item integer NOT NULL)`);
  });

  afterAll(async () => {
    await pool?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool?.end();
  });

  /**
   * A checked-out connection, its sender, and a count of the Syncs written on it. Tests release
   * it destroyed, so that one failing midway leaves no open transaction to the next.
   */
  async function connection(prepare = true): Promise<{
    client: pg.PoolClient;
    sender: PgTransactionSender;
    syncs: () => number;
  }> {
    const client = await pool.connect();
    const protocol = (client as unknown as { connection: { sync(): void } }).connection;
    let syncs = 0;
    const sync = protocol.sync.bind(protocol);
    protocol.sync = () => {
      syncs++;
      sync();
    };
    return { client, sender: new PgTransactionSender(client, { prepare }), syncs: () => syncs };
  }

  it('sends the statements of one turn behind one Sync and answers each in order', async () => {
    const { client, sender, syncs } = await connection();
    try {
      const begun = sender.send('BEGIN', undefined, true);
      const inserted = ['a', 'b', 'c'].map((label) =>
        sender.send('INSERT INTO events (label) VALUES ($1) RETURNING seq, label', [label]),
      );
      const counted = sender.send('SELECT count(*)::int AS n FROM events WHERE label = ANY($1)', [
        ['a', 'b', 'c'],
      ]);
      const answers = await Promise.all([begun, ...inserted, counted]);
      expect(syncs()).toBe(1);
      const rows = answers.slice(1, 4).map((answer) => (answer as pg.QueryResult<Labelled>).rows[0]!);
      expect(rows.map((row) => row.label)).toEqual(['a', 'b', 'c']);
      const seqs = rows.map((row) => Number(row.seq));
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect((answers[4] as pg.QueryResult).rows).toEqual([{ n: 3 }]);
      expect((answers[1] as pg.QueryResult).rowCount).toBe(1);
      await client.query('ROLLBACK');
    } finally {
      client.release(true);
    }
  });

  it('answers the failing statement with its error and those after it with 25P02', async () => {
    const { client, sender } = await connection();
    try {
      const sent = [
        sender.send('BEGIN', undefined, true),
        sender.send('INSERT INTO events (label) VALUES ($1)', ['before']),
        sender.send('SELECT 1 / $1::int AS x', [0]),
        sender.send('INSERT INTO events (label) VALUES ($1)', ['after']),
      ];
      const settled = await Promise.allSettled(sent);
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
      expect((settled[2] as PromiseRejectedResult).reason).toMatchObject({ code: '22012' });
      expect((settled[3] as PromiseRejectedResult).reason).toMatchObject({ code: '25P02' });
      // The transaction is aborted, as it would be statement by statement; the connection is not.
      const { command } = await client.query('COMMIT');
      expect(command).toBe('ROLLBACK');
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM events WHERE label IN ('before', 'after')`,
      );
      expect(rows).toEqual([{ n: 0 }]);
    } finally {
      client.release(true);
    }
  });

  it('parses a prepared statement once, on its own, and binds it by name afterwards', async () => {
    const sql = preparedStatement(`INSERT INTO ${schema}.events (label) VALUES ($1) RETURNING label`);
    const name = preparedStatementName(sql)!;
    const { client, sender, syncs } = await connection();
    try {
      const first = [
        sender.send('BEGIN', undefined, true),
        sender.send(sql, ['p1']),
        sender.send(sql, ['p2']),
      ];
      await Promise.all(first);
      // BEGIN alone, then the first use with its Parse, then the second bound by name.
      expect(syncs()).toBe(3);
      const again = [sender.send(sql, ['p3']), sender.send(sql, ['p4'])];
      const answers = (await Promise.all(again)) as pg.QueryResult<Labelled>[];
      expect(answers.map((answer) => answer.rows[0]!.label)).toEqual(['p3', 'p4']);
      expect(syncs()).toBe(4);
      const { rows } = await client.query(
        'SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = $1',
        [name],
      );
      expect(rows).toEqual([{ n: 1 }]);
      await client.query('ROLLBACK');
    } finally {
      client.release(true);
    }
  });

  it('sends a script without parameters on its own, in its place among the others', async () => {
    const { client, sender } = await connection(false);
    try {
      const sent = [
        sender.send('BEGIN', undefined, true),
        sender.send('INSERT INTO events (label) VALUES ($1)', ['s1']),
        sender.send(
          `INSERT INTO events (label) VALUES ('s2'); INSERT INTO events (label) VALUES ('s3')`,
          undefined,
        ),
        sender.send('INSERT INTO events (label) VALUES ($1)', ['s4']),
      ];
      await Promise.all(sent);
      const { rows } = await client.query<Labelled>(
        `SELECT label FROM events WHERE label LIKE 's_' ORDER BY seq`,
      );
      expect(rows.map((row) => row.label)).toEqual(['s1', 's2', 's3', 's4']);
      await client.query('ROLLBACK');
    } finally {
      client.release(true);
    }
  });

  it('property: a turn behind one Sync answers as the same statements each behind its own', async () => {
    // What a statement can be: a write, a read with rows, a failure, a script without parameters.
    const statement = fc.constantFrom('write', 'read', 'fail', 'script');
    let runs = 0;
    /** The statements' outcomes, the COMMIT's answer and what the transaction left. */
    const outcome = async (kinds: string[], batched: boolean): Promise<unknown> => {
      const run = `r${runs++}`;
      const client = await pool.connect();
      try {
        const sender = new PgTransactionSender(client, { prepare: true });
        type Answer = pg.QueryResult | pg.QueryResult[];
        const send = (sql: string, params?: unknown[]): Promise<Answer> =>
          batched ? sender.send(sql, params) : (client.query(sql, params) as Promise<Answer>);
        const sent: Promise<Answer>[] = [
          batched ? sender.send('BEGIN', undefined, true) : client.query('BEGIN'),
        ];
        kinds.forEach((kind, item) => {
          if (kind === 'write') sent.push(send('INSERT INTO runs (run, item) VALUES ($1, $2)', [run, item]));
          if (kind === 'read') sent.push(send('SELECT item FROM runs WHERE run = $1 ORDER BY item', [run]));
          if (kind === 'fail') sent.push(send('SELECT 1 / ($1::int - $1::int) AS x', [item]));
          if (kind === 'script')
            sent.push(send(`INSERT INTO runs (run, item) VALUES ('${run}', ${item}); SELECT 1 AS one`));
        });
        const settled = await Promise.allSettled(sent);
        const { command } = await client.query('COMMIT');
        const { rows } = await client.query<{ item: number }>(
          'SELECT item FROM runs WHERE run = $1 ORDER BY item',
          [run],
        );
        return {
          statements: settled.map((s) =>
            s.status === 'rejected'
              ? { failed: (s.reason as { code?: string }).code }
              : { rows: ([] as pg.QueryResult<Row>[]).concat(s.value).map((r) => r.rows) },
          ),
          command,
          left: rows.map((row) => row.item),
        };
      } finally {
        client.release(true);
      }
    };
    await fc.assert(
      fc.asyncProperty(fc.array(statement, { minLength: 1, maxLength: 8 }), async (kinds) => {
        expect(await outcome(kinds, true)).toEqual(await outcome(kinds, false));
      }),
      { numRuns: propertyRuns(40) },
    );
  });

  it('answers every statement not yet answered with the failure of the session', async () => {
    const { client, sender } = await connection();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    client.on('error', () => undefined);
    const sent = [
      sender.send('BEGIN', undefined, true),
      sender.send('SELECT pg_sleep($1::float8)', [5]),
      sender.send('INSERT INTO events (label) VALUES ($1)', ['never']),
    ];
    const settled = Promise.allSettled(sent);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    const [begun, sleeping, inserting] = await settled;
    expect(begun!.status).toBe('fulfilled');
    expect(sleeping).toMatchObject({ status: 'rejected', reason: { code: '57P01' } });
    expect(inserting).toMatchObject({ status: 'rejected', reason: { code: '57P01' } });
    client.release(true);
  });

  it('turns a row the driver cannot parse into that statement’s failure only', async () => {
    const { client, sender } = await connection();
    client.setTypeParser(1700, () => {
      throw new Error('no numerics here');
    });
    try {
      const sent = [sender.send('SELECT $1::numeric AS n', [1]), sender.send('SELECT $1::int AS n', [2])];
      const settled = await Promise.allSettled(sent);
      expect((settled[0] as PromiseRejectedResult).reason).toMatchObject({ message: 'no numerics here' });
      expect((settled[1] as PromiseFulfilledResult<pg.QueryResult>).value.rows).toEqual([{ n: 2 }]);
    } finally {
      client.release(true);
    }
  });
});
