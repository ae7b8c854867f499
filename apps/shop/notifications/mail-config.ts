import path from 'node:path';
import { defaultDataDir } from '../../../src/db/index.ts';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import { MailboxMailer } from './mailbox-mailer.ts';
import type { Mailer } from './mailer.ts';
import { SmtpMailer } from './smtp-mailer.ts';

/** Where the shop's mail goes, as read from the environment. */
export type MailConfig =
  { kind: 'smtp'; url: string; from: string } | { kind: 'mailbox'; dir: string; from: string };

/**
 * - `KEEL_SMTP_URL`: `smtp://[user:pass@]host:port` (STARTTLS when the server offers it) or
 *   `smtps://…`; mail goes to that server
 * - otherwise mail is written to a local mailbox folder, `KEEL_MAILBOX_DIR`, by default
 *   `<KEEL_DATA_DIR>/mailbox` (`./.keel/mailbox`)
 * - `KEEL_MAIL_FROM`: the sender (`shop <shop@localhost>`)
 */
export function mailConfigFromEnv(env: NodeJS.ProcessEnv = process.env): MailConfig {
  const from = env.KEEL_MAIL_FROM?.trim() || 'shop <shop@localhost>';
  const url = env.KEEL_SMTP_URL?.trim();
  if (url) {
    let protocol: string;
    try {
      protocol = new URL(url).protocol;
    } catch {
      protocol = '';
    }
    if (protocol !== 'smtp:' && protocol !== 'smtps:')
      throw new InvalidArgumentError('KEEL_SMTP_URL', 'smtp://host:port or smtps://host:port', url);
    return { kind: 'smtp', url, from };
  }
  const dataDir = env.KEEL_DATA_DIR?.trim();
  const base = dataDir && dataDir !== 'memory://' ? dataDir : defaultDataDir;
  return { kind: 'mailbox', dir: env.KEEL_MAILBOX_DIR?.trim() || path.join(base, 'mailbox'), from };
}

export function openMailer(config: MailConfig, clock?: Clock): Mailer {
  return config.kind === 'smtp'
    ? new SmtpMailer({ url: config.url, from: config.from, ...(clock === undefined ? {} : { clock }) })
    : new MailboxMailer({ dir: config.dir, from: config.from });
}
