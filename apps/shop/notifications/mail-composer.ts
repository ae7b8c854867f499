import nodemailer, { type SendMailOptions } from 'nodemailer';
import type { OutgoingMail } from './mailer.ts';

/** nodemailer's message options for a mail; the `Message-ID` is ours, so a retry resends the same one. */
export function messageOptions(from: string, mail: OutgoingMail): SendMailOptions {
  return { from, to: mail.to, subject: mail.subject, text: mail.text, messageId: `<${mail.id}>` };
}

// A transport that only builds the RFC 5322 message (nodemailer's MIME encoder), for the mailbox.
const composer = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });

/** The mail as it would cross the wire: headers, a blank line, the encoded body. */
export async function composeMessage(from: string, mail: OutgoingMail): Promise<Buffer> {
  const info = await composer.sendMail(messageOptions(from, mail));
  return info.message as Buffer;
}
