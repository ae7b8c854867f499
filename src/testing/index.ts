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
