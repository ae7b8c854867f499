import { pino, type Logger } from 'pino';
import { redactPaths, traceLogMixin } from '../../src/observability/index.ts';

/**
 * Structured JSON logs. Every line written while a request or a message is handled carries its
 * trace id, span id, correlation id and causation id (traceLogMixin). Secrets never reach a log
 * line: authorization headers, cookies, API keys and payment details are redacted wherever they
 * appear.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'shop',
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    mixin: traceLogMixin,
    redact: { paths: [...redactPaths], censor: '[redacted]' },
  });
}
