// keel/consistency: strong where it is narrow (a conditional write on one row), eventual elsewhere,
// and read-your-writes through consistency tokens.
export {
  updateIfVersion,
  readVersioned,
  versionedTable,
  type VersionedTable,
  type VersionedTableSpec,
  type TableRef,
  type Versioned,
} from './conditional-write.ts';
export { VersionConflictError, type VersionConflict } from './version-conflict-error.ts';
export {
  retryOnConflict,
  conflictRetry,
  isConflict,
  type RetryOnConflictOptions,
} from './retry-on-conflict.ts';
export {
  ConsistencyToken,
  BadConsistencyTokenError,
  consistencyTokenHeader,
  currentToken,
  tokenAfterCommit,
} from './consistency-token.ts';
export {
  ReadYourWritesDb,
  type ReadYourWritesOptions,
  type ReadOptions,
  type ReadReason,
  type ReadEvent,
  type ReadYourWritesEvents,
  type Written,
} from './read-your-writes-db.ts';
