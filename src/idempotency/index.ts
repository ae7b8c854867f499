export {
  canClaimInTransaction,
  claimRefusedSqlState,
  isTransactionalStore,
  type ClaimingIdempotencyStore,
  type IdempotencyStore,
  type TransactionalIdempotencyStore,
  type BeginOutcome,
  type BeginRequest,
  type StoredResponse,
} from './idempotency-store.ts';
export { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
export { PostgresIdempotencyStore, idempotencyMigrations } from './postgres-idempotency-store.ts';
export {
  installIdempotency,
  claimIdempotentRequest,
  completeIdempotentRequest,
  sendStoredResponse,
  isIdempotencyClaimRefused,
  type IdempotencyOptions,
} from './fastify-idempotency.ts';
export { requestFingerprint, canonicalJson } from './request-fingerprint.ts';
export { RedisIdempotencyStore, type RedisIdempotencyStoreOptions } from './redis-idempotency-store.ts';
export {
  createIdempotent,
  deriveIdempotencyKey,
  type Idempotent,
  type IdempotentContext,
  type IdempotentOptions,
} from './idempotent.ts';
export { ExpiredKeyPruner, type ExpiredKeyPrunerEvents, type PrunableStore } from './expired-key-pruner.ts';
