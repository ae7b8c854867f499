import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { flagMigrations, PostgresFlagStore } from '../flags/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { runCommand } from './cli-test-support.ts';
import { runFlagsCli } from './flags-cli.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(): Promise<{ db: TestDb; file: (name: string, content: unknown) => Promise<string> }> {
  const db = await createTestDb();
  cleanups.push(() => db.close());
  await migrate(db, flagMigrations);
  const dir = await mkdtemp(path.join(tmpdir(), 'keel-flags-cli-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return {
    db,
    file: async (name, content) => {
      const file = path.join(dir, name);
      await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
      return file;
    },
  };
}

const flags = (db: TestDb, ...argv: string[]): ReturnType<typeof runCommand> =>
  runCommand(runFlagsCli, db, ['flags', ...argv]);

const newFlow = {
  key: 'checkout.new-flow',
  enabled: false,
  variants: { on: true, off: false },
  defaultVariant: 'off',
  rules: [{ attribute: 'customerId', in: ['staff-1'], variant: 'on' }],
  split: { weights: { on: 10, off: 90 } },
};

describe('keel flags', () => {
  it('sets a flag from a file, lists it, turns it on, shows it, removes it', async () => {
    const { db, file } = await setup();
    const set = await flags(db, 'set', await file('flow.json', newFlow), '--expect-version', '0');
    expect(set).toMatchObject({ code: 0, out: ['checkout.new-flow is at version 1'] });
    expect((await flags(db, 'list')).out).toEqual([
      'checkout.new-flow                v1     off  customerId in [staff-1] → on; split by targetingKey: on 10%, off 90%; default off',
    ]);
    expect((await flags(db, 'enable', 'checkout.new-flow')).out).toEqual([
      'checkout.new-flow is on at version 2',
    ]);
    const shown = await flags(db, 'show', 'checkout.new-flow');
    expect(JSON.parse(shown.out.join('\n'))).toEqual({ ...newFlow, enabled: true });
    expect(shown.err).toEqual(['version 2']);
    expect((await flags(db, 'disable', 'checkout.new-flow')).out).toEqual([
      'checkout.new-flow is off at version 3',
    ]);
    expect((await flags(db, 'remove', 'checkout.new-flow')).out).toEqual(['checkout.new-flow removed']);
    expect((await flags(db, 'list')).err).toEqual(['0 flag(s)']);
  });

  it('refuses a stale version, a bad definition, bad JSON and a missing flag, naming each', async () => {
    const { db, file } = await setup();
    await new PostgresFlagStore(db).put(newFlow);
    const stale = await flags(db, 'set', await file('flow.json', newFlow), '--expect-version', '0');
    expect(stale.code).toBe(1);
    expect(stale.err[0]).toMatch(/^KEEL_VERSION_CONFLICT: keel_flags .*expected version 0, found 1/);
    const bad = await flags(
      db,
      'set',
      await file('bad.json', { ...newFlow, split: { weights: { on: 10 } } }),
    );
    expect(bad).toMatchObject({
      code: 1,
      err: [expect.stringMatching(/^KEEL_INVALID_ARGUMENT: flag\.split\.weights/)],
    });
    const notJson = await flags(db, 'set', await file('broken.json', '{ "key": '));
    expect(notJson.err[0]).toMatch(/^KEEL_INVALID_ARGUMENT: file: expected a readable JSON file/);
    expect((await flags(db, 'enable', 'no.such.flag')).err).toEqual(['KEEL_NOT_FOUND: no flag no.such.flag']);
    expect((await flags(db, 'set', await file('v.json', newFlow), '--expect-version', 'x')).err[0]).toMatch(
      /^KEEL_INVALID_ARGUMENT: --expect-version/,
    );
    expect((await flags(db, 'show', 'checkout.new-flow')).code).toBe(0);
  });
});
