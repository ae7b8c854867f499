import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Queryable } from '../../../src/db/index.ts';
import { InvalidArgumentError } from '../../../src/errors/index.ts';

/** What a key looks like: a prefix that says what it is (for secret scanners), then 192 random bits. */
const keyPrefix = 'shop_';

export interface ApiKeyRecord {
  id: string;
  name: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Creates a key; the returned `key` is the only time it is seen in clear. */
export async function createApiKey(db: Queryable, name: string): Promise<{ id: string; key: string }> {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new InvalidArgumentError('name', 'a name that says whose key it is', name);
  }
  const id = randomUUID();
  const key = keyPrefix + randomBytes(24).toString('base64url');
  await db.query('INSERT INTO api_keys (id, name, key_hash) VALUES ($1, $2, $3)', [
    id,
    name.trim(),
    hashApiKey(key),
  ]);
  return { id, key };
}

/** Revokes a key by id; returns whether a live key was revoked. */
export async function revokeApiKey(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query(
    'UPDATE api_keys SET revoked_at = now() WHERE id = $1::uuid AND revoked_at IS NULL',
    [id],
  );
  return rowCount > 0;
}

export async function listApiKeys(db: Queryable): Promise<ApiKeyRecord[]> {
  const { rows } = await db.query<{ id: string; name: string; created_at: Date; revoked_at: Date | null }>(
    'SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id',
  );
  return rows.map((row) => ({
    id: row.id,
    name: row.name,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  }));
}

/** The live key with this text: its id and name, or undefined. */
export async function findLiveApiKey(
  db: Queryable,
  key: string,
): Promise<{ id: string; name: string } | undefined> {
  if (!key.startsWith(keyPrefix)) return undefined;
  const { rows } = await db.query<{ id: string; name: string }>(
    'SELECT id, name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
    [hashApiKey(key)],
  );
  return rows[0];
}
