import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import { providerConfigFromEnv } from './provider-config.ts';

describe('providerConfigFromEnv', () => {
  it('defaults to a well-behaved provider on 127.0.0.1:4010 with its own embedded ledger', () => {
    expect(providerConfigFromEnv({})).toEqual({
      http: { port: 4010, host: '127.0.0.1' },
      faults: { failRate: 0, stallRate: 0, stallMs: 0, down: false },
      db: { kind: 'pglite', dataDir: path.join('.keel', 'payments', 'pglite'), schema: 'public' },
    });
  });

  it('reads the faults, the port and a shared PostgreSQL', () => {
    const config = providerConfigFromEnv({
      KEEL_PAYMENTS_PORT: '4999',
      HOST: '0.0.0.0',
      KEEL_PAYMENTS_FAIL_RATE: '0.3',
      KEEL_PAYMENTS_STALL_RATE: ' 0.1 ',
      KEEL_PAYMENTS_STALL_MS: '2500',
      KEEL_PAYMENTS_DOWN: 'true',
      KEEL_DB: 'pg',
      DATABASE_URL: 'postgres://keel@db:5432/shop',
    });
    expect(config.http).toEqual({ port: 4999, host: '0.0.0.0' });
    expect(config.faults).toEqual({ failRate: 0.3, stallRate: 0.1, stallMs: 2500, down: true });
    expect(config.db).toMatchObject({ kind: 'pg', url: 'postgres://keel@db:5432/shop' });
  });

  it.each([
    ['KEEL_PAYMENTS_FAIL_RATE', '30%', 'a number from 0 to 1'],
    ['KEEL_PAYMENTS_FAIL_RATE', '1.01', 'a number from 0 to 1'],
    ['KEEL_PAYMENTS_STALL_RATE', '-0.5', 'a number from 0 to 1'],
    ['KEEL_PAYMENTS_STALL_MS', '1.5', 'an integer from 0 to 600000'],
    ['KEEL_PAYMENTS_PORT', '70000', 'an integer from 0 to 65535'],
    ['KEEL_PAYMENTS_DOWN', 'yes', "'true' or 'false'"],
  ])('refuses %s=%s naming the variable', (name, value, expected) => {
    const read = () => providerConfigFromEnv({ [name]: value });
    expect(read).toThrow(InvalidArgumentError);
    expect(read).toThrow(`${name}: expected ${expected}`);
  });
});
