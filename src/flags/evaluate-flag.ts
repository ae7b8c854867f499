import { hash } from 'node:crypto';
import type { FlagDefinition, FlagValue } from './flag-definition.ts';

/** What the caller passes: OpenFeature's evaluation context, attributes by name. */
export type FlagContext = Readonly<Record<string, unknown>>;

/** OpenFeature's resolution reasons that keel's evaluation gives. */
export type FlagReason = 'DISABLED' | 'TARGETING_MATCH' | 'SPLIT' | 'STATIC' | 'DEFAULT';

export interface FlagEvaluation {
  /** The variant served; absent when the flag is disabled (the caller's default applies). */
  variant?: string;
  value?: FlagValue;
  reason: FlagReason;
}

/** Buckets per 100 %: a split's shares are resolved to a hundredth of a per cent. */
const buckets = 10_000;

/**
 * The bucket, 0 to 9,999, that `value` falls into for `flagKey`: the first 32 bits of
 * SHA-256(flagKey ":" value). Stable across processes and releases, and independent between
 * flags, so one customer is not in every flag's first 10 %.
 */
export function splitBucket(flagKey: string, value: string): number {
  return (
    Buffer.from(hash('sha256', `${flagKey}:${value}`, 'hex').slice(0, 8), 'hex').readUInt32BE(0) % buckets
  );
}

function attributeText(value: unknown): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** Evaluates a flag for a context; pure, and the same for the same definition and context everywhere. */
export function evaluateFlag(flag: FlagDefinition, context: FlagContext): FlagEvaluation {
  if (!flag.enabled) return { reason: 'DISABLED' };
  const serve = (variant: string, reason: FlagReason): FlagEvaluation => ({
    variant,
    value: flag.variants[variant]!,
    reason,
  });
  for (const rule of flag.rules ?? []) {
    const actual = context[rule.attribute];
    if (rule.in.some((candidate) => candidate === actual)) return serve(rule.variant, 'TARGETING_MATCH');
  }
  if (flag.split !== undefined) {
    const by = attributeText(context[flag.split.by ?? 'targetingKey']);
    if (by !== undefined) {
      const bucket = splitBucket(flag.key, by);
      // Cumulative shares, rounded once each: the last ends at exactly 10,000.
      let share = 0;
      for (const [variant, weight] of Object.entries(flag.split.weights)) {
        share += weight;
        if (bucket < Math.round(share * (buckets / 100))) return serve(variant, 'SPLIT');
      }
    }
  }
  const targeted = (flag.rules?.length ?? 0) > 0 || flag.split !== undefined;
  return serve(flag.defaultVariant, targeted ? 'DEFAULT' : 'STATIC');
}
