// keel/resilience: the public door. Dependency-free at runtime: the Redis and PostgreSQL
// stores take a client or a Db that the application passes in.
export { Policy, type Operation } from './policy.ts';
export type { ExecuteContext } from './context.ts';
export { pipeline, Pipeline } from './pipeline.ts';
export {
  retry,
  RetryPolicy,
  isRetryable,
  type RetryOptions,
  type RetryEvents,
  type RetryEvent,
  type GiveUpEvent,
  type GiveUpReason,
} from './retry.ts';
export { retryBudget, RetryBudget, type RetryBudgetOptions } from './retry-budget.ts';
export {
  circuitBreaker,
  CircuitBreakerPolicy,
  type CircuitBreakerOptions,
  type CircuitBreakerEvents,
  type SharedBreakerOptions,
  type StateChangeEvent,
} from './circuit-breaker.ts';
export { isCircuitState, type CircuitState, type CircuitStatus, type OpenReason } from './circuit-state.ts';
export type { FailureThreshold, RateThresholds, WindowStats } from './failure-window.ts';
export {
  MemoryBreakerStateStore,
  type BreakerStateStore,
  type StoredBreakerState,
  type CompareAndSetResult,
} from './breaker-state-store.ts';
export {
  timeout,
  TimeoutPolicy,
  type TimeoutMode,
  type TimeoutOptions,
  type TimeoutEvents,
} from './timeout.ts';
export { bulkhead, BulkheadPolicy, type BulkheadOptions, type BulkheadEvents } from './bulkhead.ts';
export { fallback, FallbackPolicy, type FallbackOptions, type FallbackEvents } from './fallback.ts';
export { hedge, HedgePolicy, type HedgeOptions, type HedgeEvents } from './hedge.ts';
export {
  TokenBucket,
  refillAndTake,
  type TokenBucketLimits,
  type BucketState,
  type TakeResult,
} from './token-bucket.ts';
export {
  rateLimiter,
  RateLimiterPolicy,
  type RateLimiterOptions,
  type RateLimiterEvents,
} from './rate-limiter.ts';
export { MemoryRateLimitStore, type RateLimitStore, type TakeRequest } from './rate-limit-store.ts';
export type { RedisScriptClient } from './redis-script.ts';
export { RedisBreakerStateStore, type RedisBreakerStateStoreOptions } from './redis-breaker-state-store.ts';
export { RedisRateLimitStore, type RedisRateLimitStoreOptions } from './redis-rate-limit-store.ts';
export { PostgresBreakerStateStore, breakerStateTableSql } from './postgres-breaker-state-store.ts';
export { PostgresRateLimitStore, rateLimitTableSql } from './postgres-rate-limit-store.ts';
export {
  BrokenCircuitError,
  IsolatedCircuitError,
  BulkheadRejectedError,
  TimeoutError,
  RateLimitedError,
  retryAfterOf,
} from './errors.ts';
