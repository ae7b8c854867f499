import { AsyncLocalStorage } from 'node:async_hooks';
import { context, trace } from '@opentelemetry/api';
import { headerNames, type Envelope } from '../messaging/index.ts';

/** Ids that are not trace ids but follow a unit of work: set them with `withLogContext`. */
export interface LogContext {
  correlationId?: string;
  causationId?: string;
}

const storage = new AsyncLocalStorage<LogContext>();

/** Runs `fn` with these ids on every log line written inside it (across awaits). */
export function withLogContext<T>(ids: LogContext, fn: () => T): T {
  return storage.run({ ...storage.getStore(), ...ids }, fn);
}

/** The log context of a message: its correlation id, and its own id as the causation id of what follows. */
export function logContextOf(message: Pick<Envelope, 'id' | 'headers'>): LogContext {
  const correlationId = message.headers[headerNames.correlationId];
  return { causationId: message.id, ...(correlationId === undefined ? {} : { correlationId }) };
}

/**
 * A pino `mixin`: adds `trace_id` and `span_id` of the active span, and `correlation_id` and
 * `causation_id` from `withLogContext`, to every line. Pino calls it once per line, so it only
 * reads what is already in async context.
 */
export function traceLogMixin(): Record<string, string> {
  const fields: Record<string, string> = {};
  const span = trace.getSpanContext(context.active());
  if (span !== undefined && trace.isSpanContextValid(span)) {
    fields.trace_id = span.traceId;
    fields.span_id = span.spanId;
  }
  const ids = storage.getStore();
  if (ids?.correlationId !== undefined) fields.correlation_id = ids.correlationId;
  if (ids?.causationId !== undefined) fields.causation_id = ids.causationId;
  return fields;
}

/**
 * Pino `redact.paths` for secrets wherever they appear in what keel and the shop log: request
 * authorization and API-key headers, cookies, and payment details in bodies and payloads.
 */
export const redactPaths: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.apiKey',
  '*.api_key',
  '*.password',
  '*.secret',
  '*.token',
  '*.cardNumber',
  '*.card_number',
  '*.cvv',
  '*.cvc',
  '*.payment.card',
  'payload.payment',
  'body.payment',
];
