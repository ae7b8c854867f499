// The in-memory stores run the same suites as the shared ones: they are the reference.
import { MemoryRateLimitStore } from '../../src/resilience/index.ts';
import {
  breakerStateStoreConformance,
  memoryBreakerStoreTarget,
  rateLimitStoreConformance,
} from '../../src/testing/index.ts';

breakerStateStoreConformance(memoryBreakerStoreTarget);
rateLimitStoreConformance({ name: 'memory', create: async () => new MemoryRateLimitStore() });
