import { z } from 'zod';
import { defineMessage } from '../../../src/messaging/index.ts';

/** `POST /v1/signups`. The address is kept in lower case: one account per mailbox. */
export const signupRequest = z.strictObject({
  email: z
    .email()
    .max(254)
    .transform((email) => email.toLowerCase()),
  name: z.string().trim().min(1).max(100),
});
export type SignupRequest = z.infer<typeof signupRequest>;

export const accountIdParams = z.strictObject({ id: z.uuid() });

/** An account as `POST /v1/signups` and `GET /v1/accounts/:id` answer with it. */
export const accountResource = z.object({
  id: z.uuid(),
  email: z.email(),
  name: z.string(),
  createdAt: z.iso.datetime({ offset: true }),
});

export const accountSignedUpV1 = defineMessage(
  'account.signed_up',
  1,
  z.object({ accountId: z.uuid(), email: z.string(), name: z.string() }),
);

/** Where the accounts context's events go; the worker's notifications read them. */
export const accountsTopic = 'shop.accounts';
