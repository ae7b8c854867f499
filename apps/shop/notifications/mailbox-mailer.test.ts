import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mailConfigFromEnv } from './mail-config.ts';
import { MailboxMailer } from './mailbox-mailer.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function mailbox(): Promise<{ dir: string; mailer: MailboxMailer }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'keel-mailbox-'));
  dirs.push(dir);
  return { dir, mailer: new MailboxMailer({ dir, from: 'shop <shop@shop.test>' }) };
}

const mail = { id: 'welcome-1@shop.test', to: 'ada@example.com', subject: 'Welcome, Ada', text: 'Hello Ada' };

describe('MailboxMailer: the embedded default', () => {
  it('writes the whole message as <Message-ID>.eml, nothing left in tmp/', async () => {
    const { dir, mailer } = await mailbox();
    await mailer.send(mail);
    expect((await readdir(dir)).sort()).toEqual(['tmp', 'welcome-1@shop.test.eml']);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    const message = await readFile(path.join(dir, 'welcome-1@shop.test.eml'), 'utf8');
    expect(message).toMatch(/^From: shop <shop@shop\.test>$/m);
    expect(message).toMatch(/^To: ada@example\.com$/m);
    expect(message).toMatch(/^Subject: Welcome, Ada$/m);
    expect(message).toMatch(/^Message-ID: <welcome-1@shop\.test>$/m);
    expect(message).toMatch(/\n\nHello Ada\n?$/);
  });

  it('the same mail sent twice is one file', async () => {
    const { dir, mailer } = await mailbox();
    await mailer.send(mail);
    await mailer.send(mail);
    expect((await readdir(dir)).filter((name) => name.endsWith('.eml'))).toHaveLength(1);
  });

  it('refuses an id that is no safe file name, naming it', async () => {
    const { mailer } = await mailbox();
    const failure = await mailer.send({ ...mail, id: '../escape@x' }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'KEEL_INVALID_ARGUMENT' });
    expect((failure as Error).message).toContain('mail id');
  });
});

describe('mailConfigFromEnv', () => {
  it('uses the SMTP server of KEEL_SMTP_URL, else a mailbox under the data directory', () => {
    expect(mailConfigFromEnv({ KEEL_SMTP_URL: 'smtp://mail:25', KEEL_MAIL_FROM: 'x <x@y>' })).toEqual({
      kind: 'smtp',
      url: 'smtp://mail:25',
      from: 'x <x@y>',
    });
    expect(mailConfigFromEnv({ KEEL_DATA_DIR: '/var/lib/shop' })).toEqual({
      kind: 'mailbox',
      dir: '/var/lib/shop/mailbox',
      from: 'shop <shop@localhost>',
    });
    expect(mailConfigFromEnv({ KEEL_MAILBOX_DIR: '/tmp/mail' })).toMatchObject({ dir: '/tmp/mail' });
  });

  it('refuses a URL that is not smtp:// or smtps://, naming the variable', () => {
    for (const url of ['http://mail:25', 'mail:25', 'not a url'])
      expect(() => mailConfigFromEnv({ KEEL_SMTP_URL: url })).toThrow(/KEEL_SMTP_URL/);
  });
});
