import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/time/index.ts';
import { SmtpMailer } from './smtp-mailer.ts';
import { SmtpTestServer } from './smtp-test-server.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(port = 0): Promise<SmtpTestServer> {
  const smtp = new SmtpTestServer();
  await smtp.start(port);
  cleanups.push(() => smtp.stop());
  return smtp;
}

function mailer(url: string, options: { timeoutMs?: number; clock?: ManualClock } = {}): SmtpMailer {
  const smtp = new SmtpMailer({ url, from: 'shop <shop@shop.test>', timeoutMs: 2000, ...options });
  cleanups.push(() => smtp.close());
  return smtp;
}

const mail = (n: number, to = 'ada@example.com') => ({
  id: `mail-${n}@shop.test`,
  to,
  subject: `Mail ${n}`,
  text: `Hello ${n}`,
});

describe('SmtpMailer against a real SMTP server', () => {
  it('delivers the mail with its own Message-ID, sender and recipient', async () => {
    const smtp = await server();
    await mailer(smtp.url).send(mail(1));
    expect(smtp.received).toHaveLength(1);
    const [received] = smtp.received;
    expect(received).toMatchObject({ from: 'shop@shop.test', to: ['ada@example.com'] });
    expect(received!.raw).toMatch(/^Message-ID: <mail-1@shop\.test>$/m);
    expect(received!.raw).toMatch(/^Subject: Mail 1$/m);
    expect(received!.raw).toMatch(/Hello 1/);
  });

  it('a recipient refused for good (550) is a permanent failure and leaves the breaker closed', async () => {
    const smtp = await server();
    smtp.verdict = (address) =>
      address.startsWith('nobody@')
        ? { accept: false, code: 550, text: 'no such mailbox' }
        : { accept: true };
    const smtpMailer = mailer(smtp.url);
    for (let n = 0; n < 6; n++) {
      const failure = await smtpMailer.send(mail(n, 'nobody@example.com')).catch((error: unknown) => error);
      expect(failure).toMatchObject({ code: 'KEEL_PERMANENT_FAILURE' });
      expect((failure as Error).message).toContain('no such mailbox');
    }
    expect(smtpMailer.breaker.state.status).toBe('closed');
    await smtpMailer.send(mail(7));
    expect(smtp.received.map((m) => m.to)).toEqual([['ada@example.com']]);
  });

  it('a refusal for now (451) may pass on a retry: not permanent', async () => {
    const smtp = await server();
    let refusals = 1;
    smtp.verdict = () =>
      refusals-- > 0 ? { accept: false, code: 451, text: 'try again later' } : { accept: true };
    const smtpMailer = mailer(smtp.url);
    const failure = await smtpMailer.send(mail(1)).catch((error: unknown) => error);
    expect(failure).toMatchObject({ responseCode: 451 });
    expect(failure).not.toMatchObject({ code: 'KEEL_PERMANENT_FAILURE' });
    await smtpMailer.send(mail(1));
    expect(smtp.received).toHaveLength(1);
  });

  it('a server that is down opens the breaker: sends then fail fast, until it is back', async () => {
    const smtp = await server();
    // The breaker's open period runs on a manual clock; the refused connections are real.
    const clock = new ManualClock(Date.now());
    const smtpMailer = mailer(smtp.url, { clock });
    await smtpMailer.send(mail(0));
    const port = Number(new URL(smtp.url).port);
    await smtp.stop();

    for (let n = 1; n <= 5; n++) {
      const failure = await smtpMailer.send(mail(n)).catch((error: unknown) => error);
      expect(failure).not.toMatchObject({ code: 'KEEL_PERMANENT_FAILURE' });
    }
    expect(smtpMailer.breaker.state.status).toBe('open');
    await expect(smtpMailer.send(mail(6))).rejects.toMatchObject({ code: 'KEEL_BROKEN_CIRCUIT' });

    // Back on the same port: the breaker lets a probe through after its 30 s, and it closes.
    const back = await server(port);
    await expect(smtpMailer.send(mail(7))).rejects.toMatchObject({ code: 'KEEL_BROKEN_CIRCUIT' });
    await clock.advance(30_000);
    await smtpMailer.send(mail(7));
    expect(smtpMailer.breaker.state.status).toBe('closed');
    expect(back.received.map((m) => m.raw.match(/^Message-ID: <(.+)>$/m)?.[1])).toEqual(['mail-7@shop.test']);
  });
});
