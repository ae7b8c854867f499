import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'apps/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration suites share real servers; files run in parallel but each isolates itself by schema.
    pool: 'forks',
    setupFiles: ['test/setup/property-scale.ts'],
  },
});
