import type { z } from 'zod';
import { AbortedError, isErrorCode, isKeelError, KeelError } from '../../../src/errors/index.ts';
import type { Payment } from '../storage/payments-store.ts';
import { paymentResponse, refundResponse } from './provider-contract.ts';

/**
 * The provider answered with a 5xx or a body that is not its contract, or the connection failed:
 * whether the effect happened is unknown, so the call is repeated with the same key.
 */
export class UpstreamFailedError extends KeelError {
  readonly upstreamStatus: number | undefined;
  constructor(service: string, what: string, options: { status?: number; cause?: unknown } = {}) {
    super('KEEL_UPSTREAM_FAILED', `${service}: ${what}`, {
      cause: options.cause,
      details: options.status === undefined ? { service } : { service, upstreamStatus: options.status },
    });
    this.upstreamStatus = options.status;
  }
}

/**
 * Whether a failed call says the provider is unwell: the failures worth a retry with the same
 * key and counted by the breaker. A 4xx is the provider's verdict on the request and never
 * either; an open breaker fails fast rather than wait out its open time in a retry.
 */
export function isProviderFailure(error: unknown): boolean {
  return isKeelError(error, 'KEEL_UPSTREAM_FAILED') || isKeelError(error, 'KEEL_TIMEOUT');
}

/** What a `fetch` that failed means: the attempt's abort (a timeout, the caller), or a broken connection. */
export function fetchFailure(service: string, error: unknown, signal: AbortSignal): KeelError {
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    return reason instanceof KeelError ? reason : new AbortedError(`${service} call`, reason);
  }
  if (error instanceof KeelError) return error;
  // undici's "fetch failed" carries the socket's own error (ECONNREFUSED, ECONNRESET) as cause.
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  const what = cause instanceof Error ? cause.message : String(cause);
  return new UpstreamFailedError(service, `connection failed (${what})`, { cause: error });
}

/** A charge's answer: the payment (`200` charged, `402` declined), or the error it stands for. */
export function chargeOutcome(service: string, status: number, body: string): Payment {
  if (status === 200 || status === 402) {
    const payment = parse(service, status, body, paymentResponse);
    if ((status === 402) !== (payment.status === 'DECLINED')) {
      throw new UpstreamFailedError(service, `answered ${status} for a payment ${payment.status}`, {
        status,
      });
    }
    return payment;
  }
  throw errorOf(service, status, body);
}

/** A refund's answer: whether this call refunded the charge. */
export function refundOutcome(service: string, status: number, body: string): boolean {
  if (status === 200) return parse(service, status, body, refundResponse).refunded;
  throw errorOf(service, status, body);
}

function parse<S extends z.ZodType>(service: string, status: number, body: string, schema: S): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    throw new UpstreamFailedError(service, `answered ${status} with a body that is not JSON`, {
      status,
      cause: error,
    });
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    throw new UpstreamFailedError(service, `answered ${status} with a body outside its contract`, {
      status,
      cause: result.error,
    });
  }
  return result.data;
}

/**
 * A 4xx becomes the keel error the provider named (KEEL_IDEMPOTENCY_IN_FLIGHT, KEEL_IDEMPOTENCY_KEY_REUSED,
 * KEEL_VALIDATION_FAILED...), as the in-process provider throws it; anything else is the provider failing.
 */
function errorOf(service: string, status: number, body: string): KeelError {
  if (status < 400 || status >= 500) {
    return new UpstreamFailedError(service, `answered ${status}`, { status });
  }
  let problem: { code?: unknown; detail?: unknown } = {};
  try {
    problem = JSON.parse(body) as typeof problem;
  } catch {
    // A 4xx without a problem document is still a refusal; its status says enough.
  }
  const detail = typeof problem.detail === 'string' ? problem.detail : `answered ${status}`;
  // Never a code that reads as the provider failing: a 4xx is not retried, whatever it says.
  const code =
    isErrorCode(problem.code) && problem.code !== 'KEEL_UPSTREAM_FAILED' && problem.code !== 'KEEL_TIMEOUT'
      ? problem.code
      : 'KEEL_PERMANENT_FAILURE';
  return new KeelError(code, `${service}: ${detail}`, { details: { service, upstreamStatus: status } });
}
