import { canReadAfterCommit, type Queryable } from '../db/index.ts';
import { KeelError } from '../errors/index.ts';

/** The HTTP header a write answers with and a read sends back: `Consistency-Token: 0/16B3748`. */
export const consistencyTokenHeader = 'Consistency-Token';

/**
 * A client sent a consistency token that does not parse: not one a write of this service
 * returned (edited, truncated, from another system). `field` names where it came from.
 */
export class BadConsistencyTokenError extends KeelError {
  readonly field: string;

  constructor(field: string, received: unknown) {
    super(
      'KEEL_BAD_CONSISTENCY_TOKEN',
      `${field}: expected a consistency token as a write returned it (a WAL position like 0/16B3748), got ${describe(received)}`,
      { details: { field } },
    );
    this.field = field;
  }
}

const lsnText = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/**
 * How far a write got: the position in the primary's write-ahead log (an LSN) at or after the
 * end of the write's commit record. A replica that has replayed that far sees the write.
 *
 * On the wire it is PostgreSQL's own LSN text, `16/B374D848` (two hex numbers): short, readable in
 * logs, and comparable in SQL as `'16/B374D848'::pg_lsn`. Clients treat it as opaque. Immutable.
 */
export class ConsistencyToken {
  /** The LSN as one 64-bit number. */
  readonly lsn: bigint;

  private constructor(lsn: bigint) {
    this.lsn = lsn;
  }

  /**
   * Parses a token from its text. Surrounding spaces are ignored; anything else that is not an
   * LSN rejects with `BadConsistencyTokenError` (`KEEL_BAD_CONSISTENCY_TOKEN`, 400) naming
   * `field`. Default field: `Consistency-Token`.
   */
  static parse(text: unknown, field: string = consistencyTokenHeader): ConsistencyToken {
    const match = typeof text === 'string' ? lsnText.exec(text.trim()) : null;
    if (match === null) throw new BadConsistencyTokenError(field, text);
    return new ConsistencyToken((BigInt(`0x${match[1]!}`) << 32n) | BigInt(`0x${match[2]!}`));
  }

  /**
   * Reads the token of an HTTP request: `undefined` when the header is absent or empty; the
   * latest when it holds several (repeated headers, or a comma-separated list a client merged);
   * `BadConsistencyTokenError` when any of them does not parse.
   */
  static fromHeader(value: string | readonly string[] | undefined): ConsistencyToken | undefined {
    if (value === undefined) return undefined;
    const parts = (typeof value === 'string' ? [value] : value)
      .flatMap((v) => v.split(','))
      .map((v) => v.trim())
      .filter((v) => v !== '');
    return ConsistencyToken.latest(...parts.map((part) => ConsistencyToken.parse(part)));
  }

  /** A token from a 64-bit LSN; rejects a negative or a wider one. */
  static fromLsn(lsn: bigint): ConsistencyToken {
    if (typeof lsn !== 'bigint' || lsn < 0n || lsn > 0xffff_ffff_ffff_ffffn) {
      throw new BadConsistencyTokenError('lsn', lsn);
    }
    return new ConsistencyToken(lsn);
  }

  /** The latest of the given tokens (`undefined`s ignored): what a client that wrote several times should send. */
  static latest(...tokens: readonly (ConsistencyToken | undefined)[]): ConsistencyToken | undefined {
    let latest: ConsistencyToken | undefined;
    for (const token of tokens) {
      if (token !== undefined && (latest === undefined || token.lsn > latest.lsn)) latest = token;
    }
    return latest;
  }

  /** True when this position is at or past `other`: a replica at this position has replayed `other`'s write. */
  covers(other: ConsistencyToken): boolean {
    return this.lsn >= other.lsn;
  }

  /** PostgreSQL's LSN text, upper-case hex: `16/B374D848`. */
  toString(): string {
    const high = (this.lsn >> 32n).toString(16).toUpperCase();
    const low = (this.lsn & 0xffff_ffffn).toString(16).toUpperCase();
    return `${high}/${low}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/**
 * The token of everything committed so far on `db`'s server: its current WAL insert position.
 * Call it after the write's transaction committed, on any connection to the same primary: the
 * commit record was inserted before COMMIT returned, and the insert position only grows, so the
 * token is at or past the end of that record. It may be later than the write (other sessions
 * commit too); that only ever sends a read to the primary that a replica could have served.
 *
 * Why the insert position: `pg_current_wal_lsn()` (the write position) can lag a commit made with
 * `synchronous_commit = off`, and an LSN read inside the transaction is before its commit record.
 * PostgreSQL exposes no commit LSN of a finished transaction, so this is the exact bound it offers.
 * PGlite reports a WAL position too, so the token is produced there alike.
 *
 * Fails on a standby (SQLSTATE 55000, recovery in progress): tokens come from the primary.
 */
export async function currentToken(db: Queryable): Promise<ConsistencyToken> {
  const { rows } = await db.query<{ lsn: string }>(currentLsnSql);
  return ConsistencyToken.parse(rows[0]?.lsn, 'pg_current_wal_insert_lsn()');
}

const currentLsnSql = 'SELECT pg_current_wal_insert_lsn()::text AS lsn';

/**
 * The token of a transaction still open in `tx`, as a promise that resolves once it committed.
 * In a keel `Tx` the position is read on the transaction's own connection right behind its
 * COMMIT (on pg in the same round trip); elsewhere, and if that read fails, from `db` after the
 * commit. Await it only once the transaction committed; if it rolled back, the token means
 * nothing. A rejection (the primary unreachable after the commit) surfaces only when awaited.
 */
export function tokenAfterCommit(tx: Queryable, db: Queryable): Promise<ConsistencyToken> {
  const read = canReadAfterCommit(tx)
    ? tx.readAfterCommit<{ lsn: string }>(currentLsnSql)
    : Promise.resolve(undefined);
  const token = read.then((result) =>
    result === undefined
      ? currentToken(db)
      : ConsistencyToken.parse(result.rows[0]?.lsn, 'pg_current_wal_insert_lsn()'),
  );
  token.catch(() => undefined);
  return token;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (value === null) return 'null';
  if (typeof value === 'bigint') return `${value}n`;
  return `a ${typeof value}`;
}
