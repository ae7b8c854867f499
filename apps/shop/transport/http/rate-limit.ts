import type { FastifyInstance } from 'fastify';
import {
  MemoryRateLimitStore,
  rateLimiter,
  type TokenBucketLimits,
} from '../../../../src/resilience/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { authenticatedClient } from './api-key-auth.ts';

/**
 * A token bucket per client — its API key when the api requires them, else its address — on the API's routes (`/v1/…`; health and metrics stay
 * open): a client past its burst gets 429 `KEEL_RATE_LIMITED` with `Retry-After` in seconds.
 * The buckets are this process's (keel's memory store, which forgets refilled buckets): with
 * several api processes each allows the rate; a `RedisRateLimitStore` would share one.
 * Behind a proxy, fastify's `trustProxy` makes `request.ip` the client's.
 */
export function installRateLimit(
  app: FastifyInstance,
  options: { limits: TokenBucketLimits; clock: Clock },
): void {
  const limiter = rateLimiter({
    ...options.limits,
    shared: { store: new MemoryRateLimitStore(), key: 'shop' },
    clock: options.clock,
  });
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/')) return;
    // Per API key when the request carries one the api checked, else per address. The refusal's
    // retryAfterMs becomes its Retry-After where every problem is answered (replyWithProblem).
    await limiter.acquire({ key: authenticatedClient(request) ?? `ip:${request.ip}` });
  });
}
