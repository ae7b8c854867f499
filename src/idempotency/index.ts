export type { IdempotencyStore, BeginOutcome, BeginRequest, StoredResponse } from './idempotency-store.ts';
export { MemoryIdempotencyStore } from './memory-idempotency-store.ts';
export { PostgresIdempotencyStore, idempotencyMigrations } from './postgres-idempotency-store.ts';
export { installIdempotency, type IdempotencyOptions } from './fastify-idempotency.ts';
export { requestFingerprint, canonicalJson } from './request-fingerprint.ts';
