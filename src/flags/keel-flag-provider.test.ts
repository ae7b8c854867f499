import { OpenFeature, ProviderEvents, type EventDetails } from '@openfeature/server-sdk';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { VersionConflictError } from '../consistency/index.ts';
import { KeelError } from '../errors/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { evaluateFlag } from './evaluate-flag.ts';
import type { FlagDefinition } from './flag-definition.ts';
import { KeelFlagProvider } from './keel-flag-provider.ts';
import { PostgresFlagStore, flagMigrations } from './postgres-flag-store.ts';

const dbs: TestDb[] = [];
const providers: KeelFlagProvider[] = [];
afterEach(async () => {
  for (const provider of providers.splice(0)) await provider.onClose();
  for (const db of dbs.splice(0)) await db.close();
});

async function setup(): Promise<{ db: TestDb; store: PostgresFlagStore }> {
  const db = await createTestDb();
  dbs.push(db);
  await migrate(db, flagMigrations);
  return { db, store: new PostgresFlagStore(db) };
}

const newFlow: FlagDefinition = {
  key: 'checkout.new-flow',
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'off',
  rules: [{ attribute: 'customerId', in: ['staff-1'], variant: 'on' }],
};

/** The next configuration change the provider emits: the keys it names. */
function nextChange(provider: KeelFlagProvider): Promise<string[]> {
  return new Promise((resolve) => {
    const handler = (details?: EventDetails): void => {
      provider.events.removeHandler(ProviderEvents.ConfigurationChanged, handler);
      resolve((details as { flagsChanged?: string[] } | undefined)?.flagsChanged ?? []);
    };
    provider.events.addHandler(ProviderEvents.ConfigurationChanged, handler);
  });
}

/** An OpenFeature client of its own domain, on `provider`, ready. */
async function clientOf(provider: KeelFlagProvider): Promise<ReturnType<typeof OpenFeature.getClient>> {
  providers.push(provider);
  const domain = `keel-flags-${randomUUID()}`;
  await OpenFeature.setProviderAndWait(domain, provider);
  return OpenFeature.getClient(domain);
}

describe('PostgresFlagStore', () => {
  it('stores flags with versions, and replaces one only at the version read', async () => {
    const { store } = await setup();
    expect(await store.put(newFlow, { expectedVersion: 0 })).toBe(1);
    expect(await store.get(newFlow.key)).toEqual({ definition: newFlow, version: 1 });
    expect(await store.put({ ...newFlow, enabled: false }, { expectedVersion: 1 })).toBe(2);
    const stale = await store.put(newFlow, { expectedVersion: 1 }).catch((error: unknown) => error);
    expect(stale).toBeInstanceOf(VersionConflictError);
    expect(stale).toMatchObject({ code: 'KEEL_VERSION_CONFLICT', expected: 1, actual: 2 });
    await expect(store.put(newFlow, { expectedVersion: 0 })).rejects.toMatchObject({ actual: 2 });
    expect(await store.put(newFlow)).toBe(3);
    await expect(store.remove(newFlow.key, { expectedVersion: 2 })).rejects.toBeInstanceOf(
      VersionConflictError,
    );
    expect(await store.remove(newFlow.key, { expectedVersion: 3 })).toBe(true);
    expect(await store.list()).toEqual([]);
    await expect(store.put(newFlow, { expectedVersion: 4 })).rejects.toMatchObject({
      expected: 4,
      actual: 0,
    });
  });

  it('keeps a split in the order written, so a stored flag buckets as its definition does', async () => {
    const { store } = await setup();
    // jsonb would hand these back as control, holdout, treatment: other customers in each.
    const experiment: FlagDefinition = {
      key: 'checkout.experiment',
      enabled: true,
      variants: { treatment: 'b', control: 'a', holdout: 'none' },
      defaultVariant: 'control',
      split: { weights: { treatment: 10, control: 80, holdout: 10 } },
    };
    await store.put(experiment, { expectedVersion: 0 });
    const [stored] = await store.list();
    expect(Object.keys(stored!.definition.split!.weights)).toEqual(['treatment', 'control', 'holdout']);
    for (let i = 0; i < 200; i++) {
      const context = { targetingKey: `customer-${i}` };
      expect(evaluateFlag(stored!.definition, context)).toEqual(evaluateFlag(experiment, context));
    }
  });

  it('of two writers with the version read, one wins and the other gets a conflict', async () => {
    const { store } = await setup();
    await store.put(newFlow, { expectedVersion: 0 });
    for (let round = 1; round <= 5; round++) {
      const results = await Promise.allSettled([
        store.put({ ...newFlow, defaultVariant: 'on' }, { expectedVersion: round }),
        store.put({ ...newFlow, enabled: round % 2 === 0 }, { expectedVersion: round }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled').map((r) => r.value)).toEqual([round + 1]);
      const [loser] = results.filter((r) => r.status === 'rejected');
      expect(loser!.reason).toBeInstanceOf(VersionConflictError);
    }
    expect((await store.get(newFlow.key))?.version).toBe(6);
  });

  it('refuses an expectedVersion that is not an integer >= 0, naming it', async () => {
    const { store } = await setup();
    await store.put(newFlow);
    for (const bad of [1.5, -1, Number.NaN]) {
      await expect(store.put(newFlow, { expectedVersion: bad })).rejects.toMatchObject({
        code: 'KEEL_INVALID_ARGUMENT',
        message: expect.stringContaining('expectedVersion') as unknown,
      });
      await expect(store.remove(newFlow.key, { expectedVersion: bad })).rejects.toMatchObject({
        code: 'KEEL_INVALID_ARGUMENT',
      });
    }
    expect((await store.get(newFlow.key))?.version).toBe(1);
  });

  it('refuses a bad definition before writing, naming the field', async () => {
    const { store } = await setup();
    await expect(store.put({ ...newFlow, defaultVariant: 'maybe' })).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      message: expect.stringContaining('flag.defaultVariant') as unknown,
    });
    expect(await store.list()).toEqual([]);
  });
});

describe('KeelFlagProvider', () => {
  it('answers OpenFeature clients from memory: targeting, the default, a missing flag, a type mismatch', async () => {
    const { store } = await setup();
    await store.put(newFlow);
    await store.put({ key: 'banner.text', enabled: true, variants: { a: 'Hello' }, defaultVariant: 'a' });
    const client = await clientOf(new KeelFlagProvider(store));
    expect(await client.getBooleanValue('checkout.new-flow', false, { customerId: 'staff-1' })).toBe(true);
    expect(await client.getBooleanDetails('checkout.new-flow', true, { customerId: 'c-9' })).toMatchObject({
      value: false,
      variant: 'off',
      reason: 'DEFAULT',
      flagMetadata: { version: 1 },
    });
    expect(await client.getStringValue('banner.text', 'x')).toBe('Hello');
    expect(await client.getBooleanDetails('no.such.flag', true)).toMatchObject({
      value: true,
      errorCode: 'FLAG_NOT_FOUND',
    });
    expect(await client.getBooleanDetails('banner.text', false)).toMatchObject({
      value: false,
      errorCode: 'TYPE_MISMATCH',
    });
  });

  it('hears a change through NOTIFY and serves it, naming the changed flag', async () => {
    const { store } = await setup();
    await store.put(newFlow);
    const provider = new KeelFlagProvider(store);
    const client = await clientOf(provider);
    expect(await client.getBooleanValue('checkout.new-flow', true, { customerId: 'c-1' })).toBe(false);
    const changed = nextChange(provider);
    await store.put({ ...newFlow, defaultVariant: 'on' });
    expect(await changed).toEqual(['checkout.new-flow']);
    expect(await client.getBooleanValue('checkout.new-flow', false, { customerId: 'c-1' })).toBe(true);
    // Disabled: every caller gets its own default back.
    const disabled = nextChange(provider);
    await store.put({ ...newFlow, enabled: false });
    await disabled;
    expect(await client.getBooleanDetails('checkout.new-flow', true)).toMatchObject({
      value: true,
      reason: 'DISABLED',
    });
  });

  it('without notifications, finds changes by polling on its clock', async () => {
    const { store } = await setup();
    const clock = new ManualClock();
    // A source that cannot notify: the poll is all there is.
    const provider = new KeelFlagProvider({ list: () => store.list() }, { clock, pollIntervalMs: 5_000 });
    const client = await clientOf(provider);
    expect(await client.getBooleanValue('checkout.new-flow', true)).toBe(true);
    await store.put(newFlow);
    const changed = nextChange(provider);
    await clock.advance(5_000);
    expect(await changed).toEqual(['checkout.new-flow']);
    expect(await client.getBooleanValue('checkout.new-flow', true)).toBe(false);
  });

  it('keeps the flags it has when a read fails, and says why', async () => {
    const { db, store } = await setup();
    await store.put(newFlow);
    // No NOTIFY: another test's flag change (the channel is database-wide) would start a read of
    // its own, and a second STALE event.
    const reads: unknown[] = [];
    const provider = new KeelFlagProvider(
      { list: () => store.list() },
      { pollIntervalMs: 60_000, onRead: (error) => reads.push(error) },
    );
    const client = await clientOf(provider);
    // Written around the store's checks: a definition no provider can evaluate.
    await db.query(
      `UPDATE keel_flags SET definition = jsonb_set(definition::jsonb, '{defaultVariant}', '"gone"')::json`,
    );
    const seen: string[] = [];
    provider.events.addHandler(ProviderEvents.Stale, (details) =>
      seen.push(`stale: ${details?.message ?? ''}`),
    );
    provider.events.addHandler(ProviderEvents.Ready, () => seen.push('ready'));
    const failure = await provider.refresh().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KeelError);
    expect((failure as KeelError).message).toContain('flag.defaultVariant');
    expect(await client.getBooleanValue('checkout.new-flow', true, { customerId: 'c-1' })).toBe(false);
    await store.put({ ...newFlow, defaultVariant: 'on' });
    await provider.refresh();
    expect(seen).toEqual([expect.stringMatching(/^stale: .*flag\.defaultVariant/), 'ready']);
    // Every read is told, not only the turns: the first, the failed one, the one after.
    expect(reads).toEqual([undefined, failure, undefined]);
    expect(await client.getBooleanValue('checkout.new-flow', false, { customerId: 'c-1' })).toBe(true);
  });

  it('answers PARSE_ERROR for a flag stored unreadable, and serves and hears the others', async () => {
    const { db, store } = await setup();
    await store.put(newFlow);
    await store.put({ key: 'banner.text', enabled: true, variants: { a: 'Hello' }, defaultVariant: 'a' });
    // Written around the store's checks; no NOTIFY, so another test's change starts no read here.
    await db.query(
      `UPDATE keel_flags SET definition = jsonb_set(definition::jsonb, '{defaultVariant}', '"gone"')::json
        WHERE key = $1`,
      [newFlow.key],
    );
    const provider = new KeelFlagProvider(
      { list: () => store.list(), read: () => store.read() },
      { pollIntervalMs: 60_000 },
    );
    const client = await clientOf(provider);
    const broken = await client.getBooleanDetails('checkout.new-flow', true, { customerId: 'staff-1' });
    expect(broken).toMatchObject({ value: true, reason: 'ERROR', errorCode: 'PARSE_ERROR' });
    expect(broken.errorMessage).toMatch(/checkout\.new-flow.*flag\.defaultVariant/);
    expect(await client.getStringValue('banner.text', 'x')).toBe('Hello');
    // The store's own readers name the flag too.
    await expect(store.list()).rejects.toMatchObject({
      code: 'KEEL_INVALID_ARGUMENT',
      message: expect.stringMatching(/^flag checkout\.new-flow as stored: flag\.defaultVariant/) as unknown,
    });

    await store.put({ key: 'banner.text', enabled: true, variants: { a: 'Bye' }, defaultVariant: 'a' });
    await store.put({ ...newFlow, defaultVariant: 'on' });
    const changed = nextChange(provider);
    await provider.refresh();
    expect((await changed).sort()).toEqual(['banner.text', 'checkout.new-flow']);
    expect(await client.getStringValue('banner.text', 'x')).toBe('Bye');
    expect(await client.getBooleanValue('checkout.new-flow', false, { customerId: 'c-1' })).toBe(true);
  });

  it('with the store unreachable at start, serves defaults and keeps polling until a read succeeds', async () => {
    const { store } = await setup();
    await store.put(newFlow);
    const clock = new ManualClock();
    let down = true;
    const provider = new KeelFlagProvider(
      {
        list: () => (down ? Promise.reject(new Error('connection refused')) : store.list()),
      },
      { clock, pollIntervalMs: 5_000 },
    );
    providers.push(provider);
    const domain = `keel-flags-${randomUUID()}`;
    await expect(OpenFeature.setProviderAndWait(domain, provider)).rejects.toThrow('connection refused');
    const client = OpenFeature.getClient(domain);
    // Not FLAG_NOT_FOUND: nothing is known about the flag yet.
    expect(await client.getBooleanDetails('checkout.new-flow', true)).toMatchObject({
      value: true,
      errorCode: 'PROVIDER_NOT_READY',
    });
    await clock.advance(5_000); // still down: tried, and tried again later
    down = false;
    const ready = new Promise<void>((resolve) =>
      provider.events.addHandler(ProviderEvents.Ready, () => resolve()),
    );
    await clock.advance(5_000);
    await ready;
    expect(client.providerStatus).toBe('READY');
    expect(await client.getBooleanDetails('checkout.new-flow', true)).toMatchObject({
      value: false,
      variant: 'off',
      flagMetadata: { version: 1 },
    });
  });

  it('hears a flag removed and created again, though its version is 1 again', async () => {
    const { store } = await setup();
    await store.put(newFlow);
    const provider = new KeelFlagProvider({ list: () => store.list() }, { pollIntervalMs: 60_000 });
    const client = await clientOf(provider);
    await store.remove(newFlow.key);
    await store.put({ ...newFlow, defaultVariant: 'on' });
    const changed = nextChange(provider);
    await provider.refresh();
    expect(await changed).toEqual(['checkout.new-flow']);
    expect(await client.getBooleanValue('checkout.new-flow', false)).toBe(true);
  });

  it('a refresh asked for while a read runs reads again after it', async () => {
    const { store } = await setup();
    let reads = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let listed2: () => void = () => undefined;
    const read2Listed = new Promise<void>((resolve) => (listed2 = resolve));
    const provider = new KeelFlagProvider({
      list: async () => {
        reads++;
        const listed = await store.list();
        // Read 2 has read the table before the flag was written, and answers after.
        if (reads === 2) {
          listed2();
          await gate;
        }
        return listed;
      },
    });
    providers.push(provider);
    await provider.initialize();
    const first = provider.refresh(); // read 2, held at the gate
    await read2Listed;
    await store.put(newFlow);
    const second = provider.refresh(); // must not be answered by read 2
    const third = provider.refresh();
    release();
    await Promise.all([first, second, third]);
    expect(reads).toBe(3);
    expect([...provider.flags.keys()]).toEqual(['checkout.new-flow']);
  });
});
