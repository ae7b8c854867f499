import type { FastifyInstance } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import { NotFoundError } from '../../../../src/errors/index.ts';
import { headerNames } from '../../../../src/messaging/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { signUp } from '../../application/signup.ts';
import { accountIdParams, signupRequest } from '../../contracts/accounts.ts';
import { findAccount } from '../../storage/accounts-store.ts';
import { parseRequest } from './parse.ts';

export interface AccountsRoutesOptions {
  db: Db;
  clock: Clock;
}

/**
 * `POST /v1/signups`: 201 with the new account, or 200 with the same account when this email
 * and name signed up before (a retry needs no idempotency key: the email is the key).
 * `GET /v1/accounts/:id`.
 */
export async function accountsRoutes(
  app: FastifyInstance,
  { db, clock }: AccountsRoutesOptions,
): Promise<void> {
  app.post('/v1/signups', { bodyLimit: 16 * 1024 }, async (request, reply) => {
    const body = parseRequest(signupRequest, request.body, 'request body');
    const correlation = request.headers['x-correlation-id'];
    const headers = {
      [headerNames.correlationId]: typeof correlation === 'string' ? correlation : request.id,
    };
    const { account, created } = await signUp(db, clock, body, headers);
    return reply
      .status(created ? 201 : 200)
      .header('location', `/v1/accounts/${account.id}`)
      .send(account);
  });

  app.get('/v1/accounts/:id', async (request) => {
    const { id } = parseRequest(accountIdParams, request.params, 'path');
    const account = await findAccount(db, id);
    if (account === undefined) throw new NotFoundError('account', id);
    return account;
  });
}
