/** What a client is told of a server-side failure whose cause it cannot act on. */
const serverFailed = 'The server failed to handle the request.';

/** One code's public face: its HTTP status, its title and, for some, what a client is told. */
export interface ErrorCodeEntry {
  /** The HTTP status a route answers with when the error escapes a handler. */
  status: number;
  /** The problem+json `title`: the same for every error of the code. */
  title: string;
  /**
   * Present on codes whose message and details describe the server — its addresses, paths,
   * dependencies, lifecycle, SQL — rather than the request: the one sentence a client gets in
   * their place (problem+json `detail`, no details), while the server's log keeps the error.
   * Absent on codes whose message and details describe the request and help its sender correct
   * it: those reach the client as they are.
   */
  clientDetail?: string;
}

/**
 * The one table of error codes. Every `KeelError` carries one of these; `docs/errors.md`
 * lists exactly these codes (a test compares them), so a code is a stable public name.
 */
export const errorCodes = {
  KEEL_INVALID_ARGUMENT: { status: 400, title: 'Invalid argument' },
  KEEL_VALIDATION_FAILED: { status: 400, title: 'Validation failed' },
  KEEL_MALFORMED_BODY: { status: 400, title: 'Malformed request body' },
  KEEL_PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  KEEL_HEADERS_TOO_LARGE: { status: 431, title: 'Request headers too large' },
  KEEL_REQUEST_TIMEOUT: { status: 408, title: 'Request timeout' },
  KEEL_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  KEEL_UNAUTHENTICATED: { status: 401, title: 'Unauthenticated' },
  KEEL_NOT_FOUND: { status: 404, title: 'Not found' },
  KEEL_ROUTE_NOT_FOUND: { status: 404, title: 'Route not found' },
  KEEL_ABORTED: {
    status: 499,
    title: 'Aborted',
    clientDetail: 'The work for this request stopped before it finished; send the request again.',
  },
  KEEL_CLOCK_DRIFT: { status: 400, title: 'Clock drift beyond bound' },
  KEEL_SERVICE_STATE: {
    status: 500,
    title: 'Service in the wrong state',
    clientDetail: 'The server is starting or stopping and cannot handle the request now; try again later.',
  },
  KEEL_SHUTTING_DOWN: {
    status: 503,
    title: 'Shutting down',
    clientDetail: 'The server is shutting down; send the request again.',
  },
  KEEL_DB_UNAVAILABLE: {
    status: 503,
    title: 'Database unavailable',
    clientDetail: 'The database is unavailable; try again later.',
  },
  KEEL_DB_FEATURE_MISSING: { status: 500, title: 'Database feature missing', clientDetail: serverFailed },
  KEEL_DB_IN_TRANSACTION: {
    status: 500,
    title: 'Database used inside its own transaction',
    clientDetail: serverFailed,
  },
  KEEL_MIGRATION_CHANGED: { status: 500, title: 'Applied migration changed', clientDetail: serverFailed },
  KEEL_MIGRATION_FAILED: { status: 500, title: 'Migration failed', clientDetail: serverFailed },
  KEEL_SCHEMA_MISSING: { status: 500, title: 'Tables not migrated', clientDetail: serverFailed },
  KEEL_MESSAGE_INVALID: { status: 400, title: 'Message invalid' },
  KEEL_UNKNOWN_MESSAGE_TYPE: { status: 400, title: 'Unknown message type' },
  KEEL_PUBLISH_FAILED: {
    status: 503,
    title: 'Publish failed',
    clientDetail: 'A message could not be sent; try again later.',
  },
  KEEL_PERMANENT_FAILURE: { status: 500, title: 'Permanent failure', clientDetail: serverFailed },
  KEEL_LEASE_LOST: {
    status: 409,
    title: 'Lease lost',
    clientDetail: 'The server lost its hold on this work; send the request again.',
  },
  KEEL_STREAM_TRIMMED: { status: 410, title: 'Stream entries trimmed' },
  KEEL_STREAM_AHEAD: { status: 409, title: 'Stored position past the stream', clientDetail: serverFailed },
  KEEL_STREAM_REPLACED: {
    status: 409,
    title: 'Stored position of a replaced stream',
    clientDetail: serverFailed,
  },
  KEEL_BROKER_UNAVAILABLE: {
    status: 503,
    title: 'Broker unavailable',
    clientDetail: 'The message broker is unavailable; try again later.',
  },
  KEEL_BROKEN_CIRCUIT: {
    status: 503,
    title: 'Circuit open',
    clientDetail: 'A service this one depends on is failing; try again later.',
  },
  KEEL_CIRCUIT_ISOLATED: {
    status: 503,
    title: 'Circuit isolated',
    clientDetail: 'A service this one depends on is switched off; try again later.',
  },
  KEEL_BULKHEAD_REJECTED: {
    status: 503,
    title: 'Bulkhead full',
    clientDetail: 'The server is at capacity; try again later.',
  },
  KEEL_TIMEOUT: {
    status: 504,
    title: 'Timed out',
    clientDetail: 'The server did not finish in time; try again later.',
  },
  KEEL_UPSTREAM_FAILED: {
    status: 502,
    title: 'Upstream service failed',
    clientDetail: 'A service this one depends on failed; try again later.',
  },
  KEEL_RATE_LIMITED: { status: 429, title: 'Rate limited' },
  KEEL_FEATURE_OFF: { status: 503, title: 'Feature turned off' },
  KEEL_VERSION_CONFLICT: { status: 409, title: 'Version conflict' },
  KEEL_ALREADY_EXISTS: { status: 409, title: 'Already exists' },
  KEEL_BAD_CONSISTENCY_TOKEN: { status: 400, title: 'Bad consistency token' },
  KEEL_IDEMPOTENCY_KEY_REQUIRED: { status: 400, title: 'Idempotency key required' },
  KEEL_IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency key reused' },
  KEEL_IDEMPOTENCY_IN_FLIGHT: { status: 409, title: 'Request in flight' },
  KEEL_INTERNAL: { status: 500, title: 'Internal error', clientDetail: serverFailed },
} as const satisfies Record<string, ErrorCodeEntry>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}

/**
 * True when errors of `code` describe the request, so their message and details are rendered
 * for the client; false when they describe the server and a client gets the code's `clientDetail`.
 */
export function messageIsPublic(code: ErrorCode): boolean {
  return clientDetailOf(code) === undefined;
}

/** What a client is told in place of the message of an error of `code`; undefined when it is told the message. */
export function clientDetailOf(code: ErrorCode): string | undefined {
  const entry: ErrorCodeEntry = errorCodes[code];
  return entry.clientDetail;
}
