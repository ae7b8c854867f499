// Test files that open PostgreSQL servers of their own choosing (the shared server, or one they
// start with startPgServer) whatever KEEL_DB says: they run the same in both of CI's passes. With
// KEEL_SKIP_PINNED_DATABASE_TESTS=1 (.ci/run's PGlite pass) vitest leaves them out, and the
// PostgreSQL pass runs them; `npm test` alone runs everything. test/integration/
// pinned-database-tests.test.ts checks that each still opens no database through KEEL_DB.

export const pinnedDatabaseTests = [
  // Processes killed while they share one server (a file-backed PGlite opens in one process only).
  'test/chaos/saga-kill.test.ts',
  'test/chaos/scheduler-kill.test.ts',
  'test/chaos/shop-kill.test.ts',
  'test/chaos/wal-outbox-kill.test.ts',
  // The WAL outbox: a server of the test's own with wal_level=logical.
  'test/conformance/wal-outbox-relay.conformance.test.ts',
  'test/integration/keel-cli-wal-outbox.test.ts',
  'test/integration/shop-wal-outbox.test.ts',
  'test/integration/wal-outbox-drain.test.ts',
  'test/integration/wal-outbox-metrics.test.ts',
  'test/integration/wal-outbox-relay-health.test.ts',
  'test/integration/wal-outbox-relay-liveness.test.ts',
  'test/integration/wal-outbox-relay-stop.test.ts',
  'test/integration/wal-outbox-relay.test.ts',
  // A server of the test's own: its roles, its binaries, its replica.
  'test/integration/outbox-relay-health.test.ts',
  'test/integration/pg-server.test.ts',
  'test/integration/read-your-writes-replica.test.ts',
  'apps/shop/read-your-writes.replica.test.ts',
] as const;
