import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Envelope } from '../../src/messaging/index.ts';
import { systemClock } from '../../src/time/index.ts';
import type { Shop } from './app.ts';
import { accountSignedUpV1 } from './contracts/accounts.ts';
import { notificationsQueue } from './contracts/notifications.ts';
import type { Account } from './domain/account.ts';
import { MailboxMailer } from './notifications/mailbox-mailer.ts';
import type { Mailer } from './notifications/mailer.ts';
import { SmtpMailer } from './notifications/smtp-mailer.ts';
import { SmtpTestServer, type ReceivedMail } from './notifications/smtp-test-server.ts';
import { notificationsTo } from './storage/notifications-store.ts';
import { createShopStore, fulfilmentFinished, openTestShop } from './test/test-shop.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function smtpServer(port = 0): Promise<SmtpTestServer> {
  const smtp = new SmtpTestServer();
  await smtp.start(port);
  cleanups.push(() => smtp.stop());
  return smtp;
}

async function started(roles: Parameters<typeof openTestShop>[1], mailer?: Mailer): Promise<Shop> {
  const store = await createShopStore();
  cleanups.push(() => store.dispose());
  const shop = await openTestShop(store, roles, systemClock, mailer === undefined ? {} : { mailer });
  await shop.start();
  cleanups.push(() => shop.stop({ drainMs: 1000 }));
  return shop;
}

async function signUp(shop: Shop, body: unknown) {
  return shop.http.inject({ method: 'POST', url: '/v1/signups', payload: body as object });
}

/** Resolves once the notifications consumer has handled `count` messages in all. */
function handled(shop: Shop, count: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) =>
    shop.notifications!.events.on('handled', () => {
      if (++seen === count) resolve();
    }),
  );
}

const header = (mail: ReceivedMail, name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(mail.raw)?.[1];

describe('POST /v1/signups', () => {
  it('creates the account (201), and the same signup again answers with it (200)', async () => {
    const shop = await started([]);
    const first = await signUp(shop, { email: 'Ada@Example.com', name: 'Ada' });
    expect(first.statusCode).toBe(201);
    const account = first.json<Account>();
    expect(account).toMatchObject({ email: 'ada@example.com', name: 'Ada' });
    expect(first.headers.location).toBe(`/v1/accounts/${account.id}`);

    const again = await signUp(shop, { email: 'ada@example.com', name: 'Ada' });
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(account);
    const read = await shop.http.inject({ url: `/v1/accounts/${account.id}` });
    expect(read.json()).toEqual(account);

    // One account, one event: the repeat wrote nothing.
    const { rows } = await shop.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM keel_outbox WHERE type = 'account.signed_up.v1'`,
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('the email under another name is 409 KEEL_ALREADY_EXISTS; bad input is 400 naming the field', async () => {
    const shop = await started([]);
    expect((await signUp(shop, { email: 'bob@example.com', name: 'Bob' })).statusCode).toBe(201);
    const taken = await signUp(shop, { email: 'BOB@example.com', name: 'Robert' });
    expect(taken.statusCode).toBe(409);
    expect(taken.json()).toMatchObject({ code: 'KEEL_ALREADY_EXISTS' });

    for (const [body, field] of [
      [{ email: 'not-an-email', name: 'X' }, 'email'],
      [{ email: 'x@example.com', name: '  ' }, 'name'],
      [{ email: 'x@example.com', name: 'X', admin: true }, 'admin'],
    ] as const) {
      const response = await signUp(shop, body);
      expect(response.statusCode).toBe(400);
      expect(JSON.stringify(response.json())).toContain(field);
    }
    expect((await shop.http.inject({ url: `/v1/accounts/${randomUUID()}` })).statusCode).toBe(404);
  });
});

describe('notifications: mail to customers over SMTP', () => {
  it('sends the welcome mail once through the SMTP server, with the event as its Message-ID', async () => {
    const smtp = await smtpServer();
    const shop = await started(
      ['worker', 'relay'],
      new SmtpMailer({ url: smtp.url, from: 'shop <shop@shop.test>' }),
    );
    const response = await signUp(shop, { email: 'cleo@example.com', name: 'Cleo' });
    const account = response.json<Account>();

    await smtp.receivedCount(1);
    const [mail] = smtp.received;
    expect(mail).toMatchObject({ from: 'shop@shop.test', to: ['cleo@example.com'] });
    expect(header(mail!, 'Subject')).toBe('Welcome to the shop, Cleo');
    expect(mail!.raw).toContain(account.id);
    const messageId = header(mail!, 'Message-ID');
    expect(messageId).toMatch(/^<[0-9a-f-]{36}@shop\.keel>$/);

    await expect
      .poll(() => notificationsTo(shop.db, 'cleo@example.com'))
      .toEqual([expect.objectContaining({ kind: 'welcome', eventId: messageId!.slice(1, 37) })]);
  });

  it("mails the order's outcome to the customer's account: confirmed, then cancelled with the reason", async () => {
    const smtp = await smtpServer();
    const shop = await started(
      ['api', 'worker', 'relay'],
      new SmtpMailer({ url: smtp.url, from: 'shop <shop@shop.test>' }),
    );
    const account = (await signUp(shop, { email: 'dan@example.com', name: 'Dan' })).json<Account>();
    const place = async (items: { sku: string; quantity: number }[]) => {
      const response = await shop.http.inject({
        method: 'POST',
        url: '/v1/orders',
        payload: { customerId: account.id, items },
        headers: { 'idempotency-key': randomUUID() },
      });
      return response.json<{ id: string }>().id;
    };
    const confirmed = await place([{ sku: 'book-1', quantity: 2 }]);
    await fulfilmentFinished(shop, confirmed);
    const cancelled = await place([{ sku: 'rare-1', quantity: 9 }]);
    await fulfilmentFinished(shop, cancelled);

    await smtp.receivedCount(3);
    const subjects = smtp.received.map((mail) => header(mail, 'Subject'));
    expect(subjects).toEqual(
      expect.arrayContaining([
        'Welcome to the shop, Dan',
        `Order ${confirmed} is confirmed`,
        `Order ${cancelled} is cancelled`,
      ]),
    );
    const cancelMail = smtp.received.find((mail) => header(mail, 'Subject')?.includes('cancelled'));
    expect(cancelMail!.raw).toContain('out of stock: rare-1');
    expect(smtp.received.find((mail) => header(mail, 'Subject')?.includes('confirmed'))!.raw).toContain(
      '30.00',
    );
    expect(smtp.received.every((mail) => mail.to[0] === 'dan@example.com')).toBe(true);
  });

  it('the same event delivered twice sends one mail', async () => {
    const smtp = await smtpServer();
    const shop = await started(['worker'], new SmtpMailer({ url: smtp.url, from: 'shop <shop@shop.test>' }));
    const event: Envelope = accountSignedUpV1.create(
      { accountId: randomUUID(), email: 'eve@example.com', name: 'Eve' },
      { key: 'eve' },
    );
    const both = handled(shop, 2);
    await shop.queue.publish(notificationsQueue, [event]);
    await smtp.receivedCount(1);
    await shop.queue.publish(notificationsQueue, [event]);
    await both;
    expect(smtp.received).toHaveLength(1);
  });

  it('a mail server that is down delays the mail: the consumer retries until it is back', async () => {
    // Reserve a port, then close the server: the first attempt finds nothing listening there.
    const probe = await smtpServer();
    const port = Number(new URL(probe.url).port);
    await probe.stop();
    const shop = await started(
      ['worker'],
      new SmtpMailer({ url: `smtp://127.0.0.1:${port}`, from: 'shop <shop@shop.test>' }),
    );
    const retried = new Promise<void>((resolve) => shop.notifications!.events.on('retried', () => resolve()));
    const event = accountSignedUpV1.create(
      { accountId: randomUUID(), email: 'fay@example.com', name: 'Fay' },
      { key: 'fay' },
    );
    await shop.queue.publish(notificationsQueue, [event]);
    await retried;

    const back = await smtpServer(port);
    await back.receivedCount(1);
    expect(back.received[0]!.to).toEqual(['fay@example.com']);
  });
});

describe('notifications on the embedded default: a local mailbox folder', () => {
  it('writes the welcome mail as an .eml file named by its Message-ID', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'keel-shop-mailbox-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const shop = await started(
      ['worker', 'relay'],
      new MailboxMailer({ dir, from: 'shop <shop@localhost>' }),
    );
    const done = handled(shop, 1);
    await signUp(shop, { email: 'gus@example.com', name: 'Gus' });
    await done;

    const files = (await readdir(dir)).filter((name) => name.endsWith('.eml'));
    expect(files).toHaveLength(1);
    const message = await readFile(path.join(dir, files[0]!), 'utf8');
    expect(message).toMatch(/^To: gus@example\.com$/m);
    expect(message).toMatch(/^Subject: Welcome to the shop, Gus$/m);
    expect(message).toContain(`Message-ID: <${files[0]!.replace(/\.eml$/, '')}>`);
  });
});
