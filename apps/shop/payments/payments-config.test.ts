import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import { HttpPaymentProvider } from './http-payment-provider.ts';
import { paymentsConfigFromEnv, paymentsFromEnv } from './payments-config.ts';

describe('paymentsConfigFromEnv', () => {
  it('keeps the in-process provider unless KEEL_PAYMENTS_URL is set', () => {
    expect(paymentsConfigFromEnv({})).toEqual({ kind: 'in-process' });
    expect(paymentsConfigFromEnv({ KEEL_PAYMENTS_URL: '  ' })).toEqual({ kind: 'in-process' });
    expect(paymentsFromEnv({}, new ManualClock())).toBeUndefined();
  });

  it('calls the provider service at KEEL_PAYMENTS_URL, with its attempt timeout', () => {
    const env = { KEEL_PAYMENTS_URL: 'http://payments:4010', KEEL_PAYMENTS_TIMEOUT_MS: '1500' };
    expect(paymentsConfigFromEnv(env)).toEqual({
      kind: 'http',
      url: 'http://payments:4010',
      timeoutMs: 1500,
    });
    const payments = paymentsFromEnv(env, new ManualClock());
    expect(payments).toBeInstanceOf(HttpPaymentProvider);
    expect(payments!.breaker).toMatchObject({ name: 'payment-provider', state: { status: 'closed' } });
    expect(payments!.policies.timeout.timeoutMs).toBe(1500);
    payments!.dispose();
  });

  it.each([
    ['KEEL_PAYMENTS_URL', 'payments:4010', 'an http:// or https:// URL'],
    ['KEEL_PAYMENTS_TIMEOUT_MS', '0', 'an integer number of ms from 1 to 60000'],
    ['KEEL_PAYMENTS_TIMEOUT_MS', 'soon', 'an integer number of ms from 1 to 60000'],
  ])('refuses %s=%s naming the variable', (name, value, expected) => {
    const env = { KEEL_PAYMENTS_URL: 'http://payments:4010', [name]: value };
    expect(() => paymentsConfigFromEnv(env)).toThrow(InvalidArgumentError);
    expect(() => paymentsConfigFromEnv(env)).toThrow(`${name}: expected ${expected}`);
  });
});
