import pg from 'pg';
import { abortedTransactionError } from './pg-errors.ts';

/** One statement of a batch, with where its answer goes. */
export interface BatchedStatement {
  text: string;
  values: readonly unknown[];
  /** A named prepared statement the connection has parsed (or has been sent to parse) already. */
  name?: string;
  resolve(result: pg.QueryResult): void;
  reject(error: Error): void;
}

/** What node-postgres' `Result` offers beyond its public type: how a query fills one in. */
interface FillableResult extends pg.QueryResult {
  _types: unknown;
  addFields(fields: unknown[]): void;
  parseRow(fields: unknown[]): unknown;
  addRow(row: unknown): void;
  addCommandComplete(message: unknown): void;
}

const ResultClass = (pg as unknown as { Result: new (rowMode: unknown, types: unknown) => FillableResult })
  .Result;
/** node-postgres' own mapping of parameters (Dates, arrays, objects, Buffers) to wire values. */
const pgUtils = (pg as unknown as { utils: { prepareValue(value: unknown): unknown } }).utils;
const prepareValue = (value: unknown): unknown => pgUtils.prepareValue(value);

/** The protocol writer node-postgres hands a query at submit time (pg/lib/connection.js). */
interface ProtocolWriter {
  parse(config: { text: string; name: string; types: unknown[] }): void;
  bind(config: {
    portal: string;
    statement: string;
    values: readonly unknown[];
    binary: boolean;
    valueMapper: (value: unknown) => unknown;
  }): void;
  describe(config: { type: 'P'; name: string }): void;
  execute(config: { portal: string; rows: number }): void;
  sync(): void;
}

/** node-postgres' Query, as the base a pipelined client requires; its typed members are not used. */
const QueryBase = pg.Query as unknown as new (text: string) => object;

/**
 * Several extended-protocol statements behind one Sync: node-postgres would send each with a
 * Sync of its own, and for each Sync the server answers ReadyForQuery and flushes a packet, and
 * the driver settles one more query object. In a transaction the statements go in order and
 * stop at the first failure either way (the server skips what follows an error until the Sync,
 * as it would refuse each with 25P02), so one Sync for all of them changes no answer but the
 * skipped statements', which fail here with 25P02 as they would have there.
 *
 * It extends node-postgres' Query because a pipelined client accepts no other query class; the
 * client hands it every message until the ReadyForQuery, and it routes them statement by
 * statement.
 */
export class PgStatementBatch extends QueryBase {
  readonly #statements: BatchedStatement[];
  readonly #results: FillableResult[] = [];
  /** The statement the next message is about. */
  #current = 0;
  /** A row of the current statement that could not be parsed: its failure, at its completion. */
  #rowError: Error | undefined;

  constructor(statements: BatchedStatement[]) {
    super('-- keel statement batch');
    this.#statements = statements;
  }

  // The client calls submit with its connection once the batch's turn on the wire comes.
  submit(connection: ProtocolWriter): Error | null {
    // Result parsers: the client's type overrides, which it set on this query's own result.
    const types = (this as unknown as { _result: FillableResult })._result._types;
    for (const statement of this.#statements) {
      if (statement.name === undefined) connection.parse({ text: statement.text, name: '', types: [] });
      connection.bind({
        portal: '',
        statement: statement.name ?? '',
        values: statement.values,
        binary: false,
        valueMapper: prepareValue,
      });
      connection.describe({ type: 'P', name: '' });
      connection.execute({ portal: '', rows: 0 });
      this.#results.push(new ResultClass(undefined, types));
    }
    connection.sync();
    return null;
  }

  handleRowDescription(message: { fields: unknown[] }): void {
    this.#results[this.#current]?.addFields(message.fields);
  }

  handleDataRow(message: { fields: unknown[] }): void {
    const result = this.#results[this.#current];
    if (result === undefined || this.#rowError !== undefined) return;
    try {
      result.addRow(result.parseRow(message.fields));
    } catch (error) {
      this.#rowError = error as Error;
    }
  }

  handleCommandComplete(message: unknown): void {
    const index = this.#current++;
    const statement = this.#statements[index];
    const result = this.#results[index];
    if (statement === undefined || result === undefined) return;
    const rowError = this.#rowError;
    this.#rowError = undefined;
    if (rowError !== undefined) return statement.reject(rowError);
    result.addCommandComplete(message);
    statement.resolve(result);
  }

  handleEmptyQuery(): void {
    const index = this.#current++;
    this.#statements[index]?.resolve(this.#results[index]!);
  }

  /**
   * A statement's failure goes to it, and those the server skipped after it get 25P02. A failure
   * of the session (FATAL, a lost connection) goes to every statement not yet answered.
   */
  handleError(error: Error): void {
    const failed = this.#statements[this.#current];
    failed?.reject(error);
    const ofStatement = error instanceof pg.DatabaseError && error.severity === 'ERROR';
    for (const skipped of this.#statements.slice(this.#current + 1))
      skipped.reject(ofStatement ? skippedError() : error);
    this.#current = this.#statements.length;
  }

  handleReadyForQuery(): void {
    // Every statement answered before the Sync's ReadyForQuery; one that did not was never run.
    for (const unanswered of this.#statements.slice(this.#current)) unanswered.reject(skippedError());
    this.#current = this.#statements.length;
  }
}

function skippedError(): Error {
  return abortedTransactionError(
    'current transaction is aborted, commands ignored until end of transaction block',
  );
}
