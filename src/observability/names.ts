/**
 * Every span and metric name keel emits, in one place: `docs/observability.md` lists exactly
 * these (a test checks it), and dashboards and alerts can import them instead of spelling them.
 */
export const spanNames = {
  /** CONSUMER span around a handler: `<destination> process`. */
  process: (destination: string): string => `${destination} process`,
  /** PRODUCER span around one publish call: `<destination> publish`. */
  publish: (destination: string): string => `${destination} publish`,
  /** INTERNAL span around `addToOutbox` in the caller's transaction. */
  outboxAdd: 'outbox.add',
  /** SERVER span for an HTTP route: `<METHOD> <route>`. */
  httpRoute: (method: string, route: string): string => `${method} ${route}`,
  /** INTERNAL span per run of a saga step's action: `saga <saga> <step>`. */
  sagaStep: (saga: string, step: string): string => `saga ${saga} ${step}`,
  /** INTERNAL span per run of a saga step's compensation: `saga <saga> <step> compensation`. */
  sagaCompensation: (saga: string, step: string): string => `saga ${saga} ${step} compensation`,
} as const;

/** The span names as they appear in the docs table (placeholders in angle brackets). */
export const spanNamePatterns = [
  '<destination> process',
  '<destination> publish',
  'outbox.add',
  '<METHOD> <route>',
  'saga <saga> <step>',
  'saga <saga> <step> compensation',
] as const;

/** Span events keel adds to the caller's active span. */
export const spanEvents = {
  retry: 'keel.retry',
  timeout: 'keel.timeout',
} as const;

/** Attribute keys keel adds beyond the OpenTelemetry semantic conventions. */
export const keelAttributes = {
  attempt: 'keel.attempt',
  outcome: 'keel.outcome',
  breakerState: 'keel.breaker.state',
  policy: 'keel.policy',
  walOutboxSlot: 'keel.wal_outbox.slot',
  schedule: 'keel.schedule.name',
  service: 'keel.service',
} as const;

export const metricNames = {
  consumerHandled: 'keel.consumer.handled',
  consumerRetried: 'keel.consumer.retried',
  consumerDeadLettered: 'keel.consumer.dead_lettered',
  handlerDuration: 'keel.handler.duration',
  queueDepth: 'keel.queue.depth',
  queueLag: 'keel.queue.lag',
  outboxBacklog: 'keel.outbox.backlog',
  outboxOldestAge: 'keel.outbox.oldest_unpublished_age',
  outboxParked: 'keel.outbox.parked',
  walOutboxLag: 'keel.wal_outbox.lag',
  walOutboxBuffered: 'keel.wal_outbox.buffered',
  walOutboxPublished: 'keel.wal_outbox.published',
  walOutboxPublishFailed: 'keel.wal_outbox.publish_failed',
  walOutboxParked: 'keel.wal_outbox.parked',
  policyRetries: 'keel.policy.retries',
  policyRejections: 'keel.policy.rejections',
  policyTimeouts: 'keel.policy.timeouts',
  breakerState: 'keel.breaker.state',
  breakerTransitions: 'keel.breaker.transitions',
  httpDuration: 'http.server.request.duration',
  eventLoopDelayP99: 'nodejs.eventloop.delay.p99',
  eventLoopDelayMax: 'nodejs.eventloop.delay.max',
  heapUsed: 'v8js.memory.heap.used',
  sagaStepDuration: 'keel.saga.step.duration',
  sagaInstances: 'keel.saga.instances',
  scheduleTicks: 'keel.schedule.ticks',
  scheduleDelay: 'keel.schedule.delay',
  serviceHealth: 'keel.service.health',
} as const;

/**
 * OpenTelemetry messaging semantic-convention attribute keys. Copied rather than imported from
 * `@opentelemetry/semantic-conventions/incubating`, as its README advises: incubating names can
 * change in a minor release, and this table is what the docs promise.
 */
export const messagingAttributes = {
  system: 'messaging.system',
  destinationName: 'messaging.destination.name',
  messageId: 'messaging.message.id',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  batchMessageCount: 'messaging.batch.message_count',
} as const;
