import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import { composeMessage } from './mail-composer.ts';
import type { Mailer, OutgoingMail } from './mailer.ts';

/**
 * The embedded default: each mail becomes `<dir>/<Message-ID>.eml`, the whole RFC 5322 message
 * as an SMTP server would have received it (open it with any mail client). The file is written
 * under `tmp/` and renamed into place, so a reader never sees half a mail; the name comes from
 * the mail's id, so a mail sent twice (a redelivered event) is one file.
 */
export class MailboxMailer implements Mailer {
  readonly description: string;
  readonly #dir: string;
  readonly #from: string;

  constructor(options: { dir: string; from: string }) {
    this.#dir = path.resolve(options.dir);
    this.#from = options.from;
    this.description = this.#dir;
  }

  async send(mail: OutgoingMail): Promise<void> {
    const file = mailboxFileName(mail.id);
    const message = await composeMessage(this.#from, mail);
    const staging = path.join(this.#dir, 'tmp');
    await mkdir(staging, { recursive: true });
    const temporary = path.join(staging, `${file}.${process.pid}`);
    await writeFile(temporary, message);
    await rename(temporary, path.join(this.#dir, file));
  }

  async close(): Promise<void> {}
}

/** A Message-ID's local part and domain make a safe file name; anything else is refused. */
export function mailboxFileName(id: string): string {
  if (!/^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+$/.test(id)) {
    throw new InvalidArgumentError('mail id', 'letters, digits, ".", "_", "-" and one "@"', id);
  }
  return `${id}.eml`;
}
