import { context, propagation, type Context } from '@opentelemetry/api';
import type { Envelope, Headers } from '../messaging/index.ts';

/**
 * Returns a copy of `headers` with the W3C `traceparent` (and `tracestate`, when there is one)
 * of `ctx` (default: the active context) written in by the globally registered propagator.
 * With no SDK registered, or no active span, the copy is unchanged: nothing is invented.
 * Call it when creating an envelope, so the consumer's span joins the producer's trace.
 */
export function injectTraceHeaders(
  headers: Readonly<Headers> = {},
  ctx: Context = context.active(),
): Headers {
  const carrier: Headers = { ...headers };
  propagation.inject(ctx, carrier);
  return carrier;
}

/** The context carried by an envelope's headers, on top of `base` (default: the active context). */
export function extractTraceContext(
  envelope: Pick<Envelope, 'headers'>,
  base: Context = context.active(),
): Context {
  return propagation.extract(base, envelope.headers);
}
