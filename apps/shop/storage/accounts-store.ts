import type { Queryable } from '../../../src/db/index.ts';
import type { Account } from '../domain/account.ts';

interface AccountRow {
  id: string;
  email: string;
  name: string;
  created_at: Date | string;
}

const columns = 'id::text AS id, email, name, created_at';

/** Inserts the account unless its email is taken; returns whether it was inserted. */
export async function insertAccount(tx: Queryable, account: Account): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO accounts (id, email, name, created_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (email) DO NOTHING`,
    [account.id, account.email, account.name, account.createdAt],
  );
  return rowCount > 0;
}

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Orders carry any customer id; one that is not a uuid names no account (and no query error). */
export async function findAccount(db: Queryable, id: string): Promise<Account | undefined> {
  if (!uuid.test(id)) return undefined;
  const { rows } = await db.query<AccountRow>(`SELECT ${columns} FROM accounts WHERE id = $1`, [id]);
  return rows[0] === undefined ? undefined : toAccount(rows[0]);
}

export async function findAccountByEmail(db: Queryable, email: string): Promise<Account | undefined> {
  const { rows } = await db.query<AccountRow>(`SELECT ${columns} FROM accounts WHERE email = $1`, [email]);
  return rows[0] === undefined ? undefined : toAccount(rows[0]);
}

function toAccount(row: AccountRow): Account {
  return { id: row.id, email: row.email, name: row.name, createdAt: new Date(row.created_at).toISOString() };
}
