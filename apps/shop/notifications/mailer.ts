/** One email the shop sends: plain text, to one recipient. */
export interface OutgoingMail {
  /** The `Message-ID` (without angle brackets): the same for every attempt at the same mail. */
  readonly id: string;
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

/**
 * Where mail goes: an SMTP server (`SmtpMailer`) or, on the embedded default, a folder of `.eml`
 * files (`MailboxMailer`). `send` resolves once the mail is accepted for delivery. A failure the
 * server says will not change on a retry (a rejected recipient, a 5xx reply) is a
 * `PermanentError`, so the consumer dead-letters the message instead of retrying it.
 */
export interface Mailer {
  /** Says where mail goes, for the first screen and logs: `smtp://host:port` or the folder. */
  readonly description: string;
  send(mail: OutgoingMail, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}
