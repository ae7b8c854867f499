import { configDefaults, defineConfig } from 'vitest/config';
import { pinnedDatabaseTests } from './test/setup/pinned-database-tests.ts';

const skipPinned = process.env.KEEL_SKIP_PINNED_DATABASE_TESTS === '1';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'apps/**/*.test.ts', 'test/**/*.test.ts', 'examples/**/*.test.ts'],
    exclude: skipPinned ? [...configDefaults.exclude, ...pinnedDatabaseTests] : configDefaults.exclude,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration suites share real servers; files run in parallel but each isolates itself by schema.
    pool: 'forks',
    setupFiles: ['test/setup/property-scale.ts'],
  },
});
