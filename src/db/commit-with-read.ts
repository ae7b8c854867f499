import pg from 'pg';
import type { QueryResult, Row } from './db.ts';

/** What the COMMIT answered (`COMMIT`, or `ROLLBACK` for an aborted transaction) and the read's result. */
export interface CommitAnswer {
  command: string;
  /** Undefined when there was no read, the transaction did not commit, or the read failed. */
  read: QueryResult | undefined;
}

/**
 * Sends COMMIT, and with `readSql` a read right behind it in the same message:
 * `COMMIT; SET LOCAL transaction_read_only = on; <read>`. The server runs the read in an
 * implicit transaction of its own, which SET LOCAL makes read-only; one message and one answer
 * instead of two cost the driver a query object and the server a round of its protocol — most
 * of what reading a consistency token after each commit cost.
 *
 * The read's failure is not the commit's: the message's one error could come from either, so the
 * COMMIT's own completion is watched, and a failure after it resolves with `read` undefined.
 * A failed COMMIT rejects, as a lone COMMIT would.
 */
export function commitWithRead(client: pg.ClientBase, readSql?: string): Promise<CommitAnswer> {
  return new Promise((resolve, reject) => {
    const text =
      readSql === undefined ? 'COMMIT' : `COMMIT; SET LOCAL transaction_read_only = on; ${readSql}`;
    const query = new pg.Query(text) as unknown as WatchedQuery;
    const completed: string[] = [];
    const handleCommandComplete = query.handleCommandComplete.bind(query);
    query.handleCommandComplete = (message, connection) => {
      // pg-protocol names the tag `text` ('COMMIT', 'ROLLBACK', 'SELECT 1'); native bindings `command`.
      completed.push((message.text ?? message.command ?? '').split(' ')[0]!);
      handleCommandComplete(message, connection);
    };
    query.callback = (error, answer) => {
      if (error === null) {
        const results = Array.isArray(answer) ? answer : [answer];
        const command = results[0]!.command;
        const last = results.at(-1)!;
        const read =
          readSql === undefined || command !== 'COMMIT'
            ? undefined
            : { rows: last.rows as Row[], rowCount: last.rowCount ?? 0 };
        resolve({ command, read });
      } else if (completed[0] === 'COMMIT') {
        resolve({ command: 'COMMIT', read: undefined });
      } else {
        reject(error);
      }
    };
    void client.query(query);
  });
}

/** The parts of node-postgres' Query this needs: its completion hook (pg/lib/query.js) and its callback. */
interface WatchedQuery extends pg.Submittable {
  handleCommandComplete(message: { text?: string; command?: string }, connection: unknown): void;
  callback: (error: Error | null, answer: pg.QueryResult | pg.QueryResult[]) => void;
}
