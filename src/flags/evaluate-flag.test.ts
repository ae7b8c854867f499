import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeelError } from '../errors/index.ts';
import { evaluateFlag, splitBucket } from './evaluate-flag.ts';
import { parseFlagDefinition, type FlagDefinition } from './flag-definition.ts';

const checkout: FlagDefinition = {
  key: 'checkout.new-flow',
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'off',
  rules: [{ attribute: 'customerId', in: ['staff-1', 'staff-2'], variant: 'on' }],
  split: { weights: { on: 25, off: 75 } },
};

const rollout = (percent: number): FlagDefinition => ({
  key: 'payments.provider-v2',
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'off',
  split: { weights: { on: percent, off: 100 - percent } },
});

describe('evaluateFlag', () => {
  it('serves nothing when disabled: the caller keeps its default', () => {
    expect(evaluateFlag({ ...checkout, enabled: false }, { customerId: 'staff-1' })).toEqual({
      reason: 'DISABLED',
    });
  });

  it('serves the first matching rule, then the split, then the default variant', () => {
    expect(evaluateFlag(checkout, { customerId: 'staff-2', targetingKey: 'x' })).toEqual({
      variant: 'on',
      value: true,
      reason: 'TARGETING_MATCH',
    });
    expect(evaluateFlag(checkout, { targetingKey: 'customer-7' }).reason).toBe('SPLIT');
    // No targeting key: the split cannot place the context, and the default variant answers.
    expect(evaluateFlag(checkout, {})).toEqual({ variant: 'off', value: false, reason: 'DEFAULT' });
    const plain: FlagDefinition = {
      key: 'banner',
      enabled: true,
      variants: { text: 'Hello' },
      defaultVariant: 'text',
    };
    expect(evaluateFlag(plain, { targetingKey: 'a' })).toEqual({
      variant: 'text',
      value: 'Hello',
      reason: 'STATIC',
    });
  });

  it('splits by another attribute when told to, and matches rule values by type', () => {
    const byTenant: FlagDefinition = {
      ...checkout,
      rules: [{ attribute: 'plan', in: [3], variant: 'on' }],
      split: { by: 'tenant', weights: { off: 100 } },
    };
    expect(evaluateFlag(byTenant, { tenant: 't-1', targetingKey: 'u' })).toMatchObject({
      variant: 'off',
      reason: 'SPLIT',
    });
    expect(evaluateFlag(byTenant, { plan: '3' }).reason).toBe('DEFAULT');
    expect(evaluateFlag(byTenant, { plan: 3 }).reason).toBe('TARGETING_MATCH');
  });

  it('puts a rollout share of contexts in the variant, close to the share asked for', () => {
    const flag = rollout(30);
    let on = 0;
    for (let i = 0; i < 20_000; i++)
      if (evaluateFlag(flag, { targetingKey: `customer-${i}` }).value === true) on++;
    expect(on / 20_000).toBeGreaterThan(0.28);
    expect(on / 20_000).toBeLessThan(0.32);
  });

  it('property: raising a rollout only adds contexts to it, and one context always gets one answer', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        (key, a, b) => {
          const [low, high] = a <= b ? [a, b] : [b, a];
          const context = { targetingKey: key };
          const before = evaluateFlag(rollout(low), context).value;
          expect(evaluateFlag(rollout(low), context).value).toBe(before);
          if (before === true) expect(evaluateFlag(rollout(high), context).value).toBe(true);
          expect(evaluateFlag(rollout(0), context).value).toBe(false);
          expect(evaluateFlag(rollout(100), context).value).toBe(true);
        },
      ),
    );
  });

  it('property: buckets are 0 to 9,999, and differ between flags for the same context', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (flag, value) => {
        const bucket = splitBucket(flag, value);
        expect(Number.isInteger(bucket) && bucket >= 0 && bucket < 10_000).toBe(true);
      }),
    );
    const same = Array.from({ length: 1000 }, (_, i) => `c-${i}`).filter(
      (id) => splitBucket('flag-a', id) < 1000 && splitBucket('flag-b', id) < 1000,
    );
    // Independent flags: about 1 % of contexts are in both first tenths, not 10 %.
    expect(same.length).toBeLessThan(40);
  });
});

describe('parseFlagDefinition', () => {
  it('returns a valid definition as it is', () => {
    expect(parseFlagDefinition(JSON.parse(JSON.stringify(checkout)))).toEqual(checkout);
  });

  it.each([
    [{ ...checkout, key: 'has space' }, 'flag.key'],
    [{ ...checkout, enabled: 'yes' }, 'flag.enabled'],
    [{ ...checkout, variants: {} }, 'flag.variants'],
    [{ ...checkout, defaultVariant: 'maybe' }, 'flag.defaultVariant'],
    [{ ...checkout, rules: [{ attribute: 'plan', in: [{}], variant: 'on' }] }, 'flag.rules[0].in'],
    [{ ...checkout, rules: [{ attribute: 'plan', in: ['a'], variant: 'gone' }] }, 'flag.rules[0].variant'],
    [{ ...checkout, split: { weights: { on: 50, off: 40 } } }, 'flag.split.weights'],
    [{ ...checkout, split: { weights: { on: -5, off: 105 } } }, 'flag.split.weights.on'],
    [{ ...checkout, split: { weights: { other: 100 } } }, 'flag.split.weights'],
  ])('names what is wrong: %#', (input, field) => {
    const error = (() => {
      try {
        parseFlagDefinition(input);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(KeelError);
    expect((error as KeelError).code).toBe('KEEL_INVALID_ARGUMENT');
    expect((error as KeelError).message).toContain(field);
  });
});
