import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createTestDb } from '../testing/index.ts';
import {
  BadConsistencyTokenError,
  ConsistencyToken,
  currentToken,
  tokenAfterCommit,
} from './consistency-token.ts';

describe('ConsistencyToken', () => {
  it('prints PostgreSQL LSN text and parses it back', () => {
    const token = ConsistencyToken.parse('16/B374D848');
    expect(token.lsn).toBe(0x16b374d848n);
    expect(token.toString()).toBe('16/B374D848');
    expect(JSON.stringify({ token })).toBe('{"token":"16/B374D848"}');
    expect(ConsistencyToken.parse(' 0/1701df8 ').toString()).toBe('0/1701DF8');
  });

  it('property: toString and parse round-trip every 64-bit position, and order follows the LSN', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        (a, b) => {
          const ta = ConsistencyToken.fromLsn(a);
          const tb = ConsistencyToken.fromLsn(b);
          expect(ConsistencyToken.parse(ta.toString()).lsn).toBe(a);
          expect(ta.covers(tb)).toBe(a >= b);
          expect(ConsistencyToken.latest(ta, undefined, tb)?.lsn).toBe(a > b ? a : b);
        },
      ),
    );
  });

  it('refuses anything else with BadConsistencyTokenError (400) naming the field', () => {
    for (const bad of [
      '',
      'abc',
      '0/',
      '/1',
      '1/2/3',
      '123456789/0',
      '0/123456789',
      'g/1',
      '-1/0',
      '0x1/2',
      42,
      null,
      {},
    ]) {
      let error: unknown;
      try {
        ConsistencyToken.parse(bad);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(bad)).toBeInstanceOf(BadConsistencyTokenError);
      const typed = error as BadConsistencyTokenError;
      expect(typed.code).toBe('KEEL_BAD_CONSISTENCY_TOKEN');
      expect(typed.status).toBe(400);
      expect(typed.field).toBe('Consistency-Token');
    }
    expect(() => ConsistencyToken.parse('nope', 'query.token')).toThrow(
      'query.token: expected a consistency token as a write returned it (a WAL position like 0/16B3748), got "nope"',
    );
    expect(() => ConsistencyToken.fromLsn(-1n)).toThrow(BadConsistencyTokenError);
    expect(() => ConsistencyToken.fromLsn(2n ** 64n)).toThrow(BadConsistencyTokenError);
  });

  it('fromHeader: absent or empty is undefined; several values give the latest; one bad value fails', () => {
    expect(ConsistencyToken.fromHeader(undefined)).toBeUndefined();
    expect(ConsistencyToken.fromHeader('')).toBeUndefined();
    expect(ConsistencyToken.fromHeader(' , ')).toBeUndefined();
    expect(ConsistencyToken.fromHeader('0/5')?.toString()).toBe('0/5');
    expect(ConsistencyToken.fromHeader('0/5, 1/2 ,0/FF')?.toString()).toBe('1/2');
    expect(ConsistencyToken.fromHeader(['0/5', '0/9'])?.toString()).toBe('0/9');
    expect(() => ConsistencyToken.fromHeader('0/5, x')).toThrow(BadConsistencyTokenError);
  });
});

describe('currentToken', () => {
  it('is produced on this backend and moves forward with every commit', async () => {
    await using db = await createTestDb({ schemaPrefix: 'token' });
    await db.query('CREATE TABLE t (x integer)');
    const before = await currentToken(db);
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES (1)');
    });
    const after = await currentToken(db);
    expect(after.lsn).toBeGreaterThan(before.lsn);
    expect(after.covers(before)).toBe(true);
  });

  it('tokenAfterCommit: read with the commit in a keel transaction, past every write of it', async () => {
    await using db = await createTestDb({ schemaPrefix: 'token' });
    await db.query('CREATE TABLE t (x integer)');
    let token: Promise<ConsistencyToken> | undefined;
    let insideBeforeCommit: ConsistencyToken | undefined;
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES (1)');
      insideBeforeCommit = await currentToken(tx);
      token = tokenAfterCommit(tx, db);
    });
    const committed = await token;
    if (committed === undefined || insideBeforeCommit === undefined) throw new Error('no token');
    // The commit record comes after every write of the transaction.
    expect(committed.lsn).toBeGreaterThan(insideBeforeCommit.lsn);
    expect((await currentToken(db)).covers(committed)).toBe(true);
  });

  it('tokenAfterCommit: a foreign transaction gets the token from the db once committed', async () => {
    await using db = await createTestDb({ schemaPrefix: 'token' });
    const before = await currentToken(db);
    const foreign = { query: db.query.bind(db) };
    const token = await tokenAfterCommit(foreign, db);
    expect(token.covers(before)).toBe(true);
  });
});
