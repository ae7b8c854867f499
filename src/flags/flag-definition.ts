import { InvalidArgumentError } from '../errors/index.ts';

/** A value a variant may serve: what OpenFeature's boolean, string, number and object flags return. */
export type FlagValue = boolean | string | number | { [key: string]: unknown } | unknown[];

/** A context attribute's value a rule can match. */
export type MatchValue = string | number | boolean;

/** Serves `variant` when the context's `attribute` is one of `in`; rules are tried in order. */
export interface FlagRule {
  attribute: string;
  in: MatchValue[];
  variant: string;
}

/**
 * A percentage rollout: each context falls into a bucket by a hash of the flag's key and its
 * `by` attribute (default `targetingKey`), so one customer always gets one variant. The
 * variants' order as written is the buckets' order: raising the first one's share only adds
 * customers to it, and moving share between two neighbours moves only customers between them.
 */
export interface FlagSplit {
  by?: string;
  /** Percent per variant, in order; they add up to 100. */
  weights: Record<string, number>;
}

/**
 * One feature flag. Evaluated in order: a disabled flag serves the caller's default; else the
 * first rule that matches; else the split, when the context has its attribute; else
 * `defaultVariant`.
 */
export interface FlagDefinition {
  key: string;
  enabled: boolean;
  variants: Record<string, FlagValue>;
  defaultVariant: string;
  rules?: FlagRule[];
  split?: FlagSplit;
}

const flagKeyPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isFlagValue(value: unknown): value is FlagValue {
  return (
    typeof value === 'boolean' ||
    typeof value === 'string' ||
    (typeof value === 'number' && Number.isFinite(value)) ||
    (typeof value === 'object' && value !== null)
  );
}

function isMatchValue(value: unknown): value is MatchValue {
  return (
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    (typeof value === 'number' && Number.isFinite(value))
  );
}

/**
 * Checks a flag definition from outside (JSON, a form, the database) and returns it typed; a bad
 * one fails with `KEEL_INVALID_ARGUMENT` naming the field, e.g. `flag.split.weights`.
 */
export function parseFlagDefinition(input: unknown): FlagDefinition {
  if (!isRecord(input)) throw new InvalidArgumentError('flag', 'an object', input);
  const { key, enabled, variants, defaultVariant, rules, split } = input;
  if (typeof key !== 'string' || !flagKeyPattern.test(key)) {
    throw new InvalidArgumentError('flag.key', 'letters, digits, ".", "_" or "-", 1 to 200 of them', key);
  }
  if (typeof enabled !== 'boolean') throw new InvalidArgumentError('flag.enabled', 'true or false', enabled);
  if (!isRecord(variants) || Object.keys(variants).length === 0) {
    throw new InvalidArgumentError('flag.variants', 'an object of one or more named values', variants);
  }
  for (const [name, value] of Object.entries(variants)) {
    if (!isFlagValue(value)) {
      throw new InvalidArgumentError(
        `flag.variants.${name}`,
        'a boolean, string, finite number or JSON object',
        value,
      );
    }
  }
  const variant = (field: string, name: unknown): string => {
    if (typeof name !== 'string' || !Object.hasOwn(variants, name)) {
      throw new InvalidArgumentError(
        field,
        `one of the variants (${Object.keys(variants).join(', ')})`,
        name,
      );
    }
    return name;
  };
  const definition: FlagDefinition = {
    key,
    enabled,
    variants: variants as Record<string, FlagValue>,
    defaultVariant: variant('flag.defaultVariant', defaultVariant),
  };
  if (rules !== undefined) {
    if (!Array.isArray(rules)) throw new InvalidArgumentError('flag.rules', 'an array of rules', rules);
    definition.rules = rules.map((rule: unknown, index) => {
      const field = `flag.rules[${index}]`;
      if (!isRecord(rule))
        throw new InvalidArgumentError(field, 'an object { attribute, in, variant }', rule);
      if (typeof rule['attribute'] !== 'string' || rule['attribute'] === '') {
        throw new InvalidArgumentError(`${field}.attribute`, 'a context attribute name', rule['attribute']);
      }
      const values = rule['in'];
      if (!Array.isArray(values) || !values.every(isMatchValue)) {
        throw new InvalidArgumentError(`${field}.in`, 'an array of strings, numbers or booleans', values);
      }
      return {
        attribute: rule['attribute'],
        in: values,
        variant: variant(`${field}.variant`, rule['variant']),
      };
    });
  }
  if (split !== undefined) {
    if (!isRecord(split) || !isRecord(split['weights'])) {
      throw new InvalidArgumentError('flag.split', 'an object { by?, weights }', split);
    }
    const by = split['by'];
    if (by !== undefined && (typeof by !== 'string' || by === '')) {
      throw new InvalidArgumentError('flag.split.by', 'a context attribute name', by);
    }
    const weights: Record<string, number> = {};
    let total = 0;
    for (const [name, weight] of Object.entries(split['weights'])) {
      variant('flag.split.weights', name);
      if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) {
        throw new InvalidArgumentError(`flag.split.weights.${name}`, 'a percentage from 0 to 100', weight);
      }
      weights[name] = weight;
      total += weight;
    }
    if (Math.abs(total - 100) > 1e-9) {
      throw new InvalidArgumentError(
        'flag.split.weights',
        'percentages that add up to 100',
        split['weights'],
      );
    }
    definition.split = by === undefined ? { weights } : { by, weights };
  }
  return definition;
}
