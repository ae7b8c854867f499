export {
  parseFlagDefinition,
  type FlagDefinition,
  type FlagRule,
  type FlagSplit,
  type FlagValue,
  type MatchValue,
} from './flag-definition.ts';
export {
  evaluateFlag,
  splitBucket,
  type FlagContext,
  type FlagEvaluation,
  type FlagReason,
} from './evaluate-flag.ts';
export {
  PostgresFlagStore,
  flagMigrations,
  flagsChannel,
  type FlagSource,
  type StoredFlag,
  type UnreadableFlag,
} from './postgres-flag-store.ts';
export { KeelFlagProvider, type KeelFlagProviderOptions } from './keel-flag-provider.ts';
