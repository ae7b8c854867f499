export {
  createTestDb,
  createTempPgliteDir,
  testDbBackend,
  uniqueSchemaName,
  type TestDb,
  type TestDbBackend,
  type TestDbOptions,
  type TempPgliteDir,
} from './db.ts';
export { advanceUntil, type AdvanceUntilOptions } from './advance-until.ts';
export { trackedDb } from './statements-in-flight.ts';
export { flakyDb, type FlakyDb } from './flaky-db.ts';
export { propertyRuns } from './property-runs.ts';
export { pgliteTemplate } from './pglite-template.ts';
export {
  breakerStateStoreConformance,
  memoryBreakerStoreTarget,
  type BreakerStoreTarget,
} from './breaker-store-conformance.ts';
export { rateLimitStoreConformance, type RateLimitStoreTarget } from './rate-limit-store-conformance.ts';
export { describeBrokerConformance, type BrokerConformanceOptions } from './broker-conformance.ts';
export {
  describeOutboxRelayConformance,
  type ConformanceRelay,
  type OutboxRelayConformanceEvents,
  type OutboxRelayConformanceOptions,
  type OutboxRelayHarness,
  type OutboxRelayTarget,
} from './outbox-relay-conformance.ts';
export { idempotencyStoreConformance, type IdempotencyStoreTarget } from './idempotency-store-conformance.ts';
export { startReplicaCluster, type ReplicaCluster, type ReplicaClusterOptions } from './replica-cluster.ts';
export { startPgServer, type PgServer, type PgServerOptions } from './pg-server.ts';
export {
  startWalOutboxTestServer,
  type WalOutboxTestServer,
  type WalOutboxTestSlot,
} from './wal-outbox-test-server.ts';
export { sagaEnded } from './saga-ended.ts';
export { openApiResponses, type ObservedResponse } from './openapi-responses.ts';
export { startTcpProxy, type TcpProxy, type TcpProxyOptions } from './tcp-proxy.ts';
