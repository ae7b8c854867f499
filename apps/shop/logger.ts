import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs. Secrets never reach a log line: authorization headers and API keys are
 * redacted wherever they appear in a logged request.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'shop',
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    redact: {
      paths: ['req.headers.authorization', 'req.headers["x-api-key"]', '*.apiKey', '*.password'],
      censor: '[redacted]',
    },
  });
}
