import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';

/** A mail as the server received it. */
export interface ReceivedMail {
  readonly from: string;
  readonly to: readonly string[];
  /** The whole message, headers and body, as it crossed the wire. */
  readonly raw: string;
}

/** How the server answers the next recipient: accept, or a reply code of its choosing. */
export type RecipientVerdict = { accept: true } | { accept: false; code: number; text: string };

/**
 * A real SMTP server (nodemailer's smtp-server) on a port of its own, for the tests of the
 * shop's mail: it speaks the protocol, keeps what it receives, and refuses recipients when told.
 */
export class SmtpTestServer {
  readonly received: ReceivedMail[] = [];
  /** Decides each recipient; default: accept. */
  verdict: (address: string) => RecipientVerdict = () => ({ accept: true });
  readonly #server: SMTPServer;
  readonly #waiters: { count: number; resolve: () => void }[] = [];
  #port = 0;

  constructor() {
    this.#server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      // On stop, open connections get a 421 at once instead of 30 s of grace: a server going down.
      closeTimeout: 50,
      onRcptTo: (address: SMTPServerAddress, _session, callback) => {
        const verdict = this.verdict(address.address);
        if (verdict.accept) return callback();
        callback(Object.assign(new Error(verdict.text), { responseCode: verdict.code }));
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          this.received.push({
            from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
            to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
            raw: Buffer.concat(chunks).toString('utf8'),
          });
          for (const waiter of this.#waiters.filter((w) => this.received.length >= w.count)) {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
            waiter.resolve();
          }
          callback();
        });
      },
    });
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.#port}`;
  }

  /** Listens on `port` (0: any free one; pass the old port to come back where clients look). */
  async start(port = 0): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => resolve());
    });
    this.#port = (this.#server.server.address() as AddressInfo).port;
  }

  /** Resolves once `count` mails in all have arrived. */
  receivedCount(count: number): Promise<void> {
    if (this.received.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
