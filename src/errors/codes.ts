/**
 * The one table of error codes. Every `KeelError` carries one of these; `docs/errors.md`
 * lists exactly these codes (a test compares them), so a code is a stable public name.
 *
 * `status` is the HTTP status a route answers with when the error escapes a handler.
 */
export const errorCodes = {
  KEEL_INVALID_ARGUMENT: { status: 400, title: 'Invalid argument' },
  KEEL_VALIDATION_FAILED: { status: 400, title: 'Validation failed' },
  KEEL_MALFORMED_BODY: { status: 400, title: 'Malformed request body' },
  KEEL_PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  KEEL_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  KEEL_UNAUTHENTICATED: { status: 401, title: 'Unauthenticated' },
  KEEL_NOT_FOUND: { status: 404, title: 'Not found' },
  KEEL_ROUTE_NOT_FOUND: { status: 404, title: 'Route not found' },
  KEEL_ABORTED: { status: 499, title: 'Aborted' },
  KEEL_CLOCK_DRIFT: { status: 400, title: 'Clock drift beyond bound' },
  KEEL_SERVICE_STATE: { status: 500, title: 'Service in the wrong state' },
  KEEL_DB_UNAVAILABLE: { status: 503, title: 'Database unavailable' },
  KEEL_DB_FEATURE_MISSING: { status: 500, title: 'Database feature missing' },
  KEEL_DB_IN_TRANSACTION: { status: 500, title: 'Database used inside its own transaction' },
  KEEL_MIGRATION_CHANGED: { status: 500, title: 'Applied migration changed' },
  KEEL_MIGRATION_FAILED: { status: 500, title: 'Migration failed' },
  KEEL_SCHEMA_MISSING: { status: 500, title: 'Tables not migrated' },
  KEEL_MESSAGE_INVALID: { status: 400, title: 'Message invalid' },
  KEEL_UNKNOWN_MESSAGE_TYPE: { status: 400, title: 'Unknown message type' },
  KEEL_PUBLISH_FAILED: { status: 503, title: 'Publish failed' },
  KEEL_PERMANENT_FAILURE: { status: 500, title: 'Permanent failure' },
  KEEL_LEASE_LOST: { status: 409, title: 'Lease lost' },
  KEEL_STREAM_TRIMMED: { status: 410, title: 'Stream entries trimmed' },
  KEEL_BROKER_UNAVAILABLE: { status: 503, title: 'Broker unavailable' },
  KEEL_BROKEN_CIRCUIT: { status: 503, title: 'Circuit open' },
  KEEL_CIRCUIT_ISOLATED: { status: 503, title: 'Circuit isolated' },
  KEEL_BULKHEAD_REJECTED: { status: 503, title: 'Bulkhead full' },
  KEEL_TIMEOUT: { status: 504, title: 'Timed out' },
  KEEL_UPSTREAM_FAILED: { status: 502, title: 'Upstream service failed' },
  KEEL_RATE_LIMITED: { status: 429, title: 'Rate limited' },
  KEEL_FEATURE_OFF: { status: 503, title: 'Feature turned off' },
  KEEL_VERSION_CONFLICT: { status: 409, title: 'Version conflict' },
  KEEL_ALREADY_EXISTS: { status: 409, title: 'Already exists' },
  KEEL_BAD_CONSISTENCY_TOKEN: { status: 400, title: 'Bad consistency token' },
  KEEL_IDEMPOTENCY_KEY_REQUIRED: { status: 400, title: 'Idempotency key required' },
  KEEL_IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency key reused' },
  KEEL_IDEMPOTENCY_IN_FLIGHT: { status: 409, title: 'Request in flight' },
  KEEL_INTERNAL: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}
