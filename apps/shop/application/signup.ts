import type { Db } from '../../../src/db/index.ts';
import { KeelError } from '../../../src/errors/index.ts';
import { injectTraceHeaders, tracedAddToOutbox } from '../../../src/observability/index.ts';
import { uuidv7At, type Clock } from '../../../src/time/index.ts';
import { accountSignedUpV1, accountsTopic, type SignupRequest } from '../contracts/accounts.ts';
import type { Account } from '../domain/account.ts';
import { findAccountByEmail, insertAccount } from '../storage/accounts-store.ts';

/**
 * Writes the account and its `account.signed_up.v1` event in one transaction: the welcome mail
 * goes out if and only if the account exists. Signing up again with the same email and name
 * (a client retrying after a lost answer) finds the account and writes nothing: `created` is
 * false. The same email with another name is someone else's: `KEEL_ALREADY_EXISTS`.
 */
export async function signUp(
  db: Db,
  clock: Clock,
  request: SignupRequest,
  headers: Record<string, string> = {},
): Promise<{ account: Account; created: boolean }> {
  const account: Account = {
    id: uuidv7At(clock.now()),
    email: request.email,
    name: request.name,
    createdAt: new Date(clock.now()).toISOString(),
  };
  return db.transaction(async (tx) => {
    if (!(await insertAccount(tx, account))) {
      const existing = await findAccountByEmail(tx, account.email);
      if (existing !== undefined && existing.name === account.name)
        return { account: existing, created: false };
      throw new KeelError('KEEL_ALREADY_EXISTS', `an account with the email ${account.email} exists`, {
        details: { email: account.email },
      });
    }
    const event = accountSignedUpV1.create(
      { accountId: account.id, email: account.email, name: account.name },
      { key: account.id, headers: injectTraceHeaders(headers), clock },
    );
    await tracedAddToOutbox(tx, accountsTopic, event);
    return { account, created: true };
  });
}
