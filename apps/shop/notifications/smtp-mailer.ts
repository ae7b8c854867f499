import nodemailer, { type Transporter } from 'nodemailer';
import { PermanentError } from '../../../src/messaging/index.ts';
import {
  circuitBreaker,
  pipeline,
  timeout,
  type CircuitBreakerPolicy,
  type Pipeline,
} from '../../../src/resilience/index.ts';
import type { Clock } from '../../../src/time/index.ts';
import { messageOptions } from './mail-composer.ts';
import type { Mailer, OutgoingMail } from './mailer.ts';

export interface SmtpMailerOptions {
  /** `smtp://user:pass@host:port` (STARTTLS when offered) or `smtps://…` (TLS from the start). */
  url: string;
  /** The `From` of every mail. */
  from: string;
  /** One send, connection and reply included. Default 10 000 ms. */
  timeoutMs?: number;
  clock?: Clock;
}

/**
 * Sends through an SMTP server with nodemailer, over a small pool of kept-open connections.
 * Each send is bounded by a timeout and guarded by a circuit breaker: when the server is down,
 * sends fail fast (`KEEL_BROKEN_CIRCUIT`, retried later by the consumer) instead of each waiting
 * out a connection timeout. A reply the server marks permanent (5xx: an unknown mailbox, a
 * refused sender) does not trip the breaker — the server is fine, the mail is not — and becomes
 * a `PermanentError`, so the message is dead-lettered rather than retried for days.
 */
export class SmtpMailer implements Mailer {
  readonly description: string;
  /** For dashboards and tests: the breaker in front of the server. */
  readonly breaker: CircuitBreakerPolicy;
  readonly #transport: Transporter;
  readonly #from: string;
  readonly #policy: Pipeline;

  constructor(options: SmtpMailerOptions) {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const url = new URL(options.url);
    this.description = `${url.protocol}//${url.host}`;
    this.#from = options.from;
    this.#transport = nodemailer.createTransport({
      url: options.url,
      pool: true,
      maxConnections: 2,
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    });
    const clock = options.clock === undefined ? {} : { clock: options.clock };
    this.breaker = circuitBreaker({
      threshold: { kind: 'consecutive', failures: 5 },
      openMs: 30_000,
      handle: (error) => !(error instanceof PermanentError),
      ...clock,
    });
    this.#policy = pipeline(this.breaker, timeout(timeoutMs, clock));
  }

  async send(mail: OutgoingMail, signal?: AbortSignal): Promise<void> {
    await this.#policy.execute(async (context) => {
      try {
        // nodemailer (10.5+) aborts a send on the signal; its types do not list the option yet.
        const options = { ...messageOptions(this.#from, mail), signal: context.signal };
        await this.#transport.sendMail(options);
      } catch (error) {
        throw classifySmtpError(error, mail);
      }
    }, signal);
  }

  async close(): Promise<void> {
    this.#transport.close();
  }
}

/** nodemailer marks 5xx replies `permanent`; everything else (4xx, a refused connection) may pass. */
export function classifySmtpError(error: unknown, mail: OutgoingMail): unknown {
  const reply = error as { permanent?: boolean; responseCode?: number; response?: string; message?: string };
  if (reply.permanent !== true) return error;
  return new PermanentError(
    `the SMTP server refused mail ${mail.id} to ${mail.to}: ${reply.response ?? reply.message ?? 'no reply text'}`,
    { cause: error, details: { responseCode: reply.responseCode } },
  );
}
