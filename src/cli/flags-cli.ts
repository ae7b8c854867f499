import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { retryOnConflict } from '../consistency/index.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
// The store and the definition only: the provider's OpenFeature SDK is an optional peer of the package.
import { parseFlagDefinition } from '../flags/flag-definition.ts';
import { PostgresFlagStore, type StoredFlag } from '../flags/postgres-flag-store.ts';
import { withCliDb, type CliIo } from './cli-io.ts';

const usage = `keel flags — read and change feature flags (keel/flags)

  keel flags list                         every flag: key, version, on or off, what it serves
  keel flags show <key>                   one flag's definition, as JSON
  keel flags set <file.json> [--expect-version N]
                                          create or replace a flag from its JSON definition, checked
                                          first; with N, only if the stored version is N (0: new)
  keel flags enable <key>                 turn a flag on (off: disable), keeping the rest of it
  keel flags remove <key>

The database comes from KEEL_DB (pglite|pg), DATABASE_URL and KEEL_DATA_DIR, as for the app.`;

function summary({ definition, version }: StoredFlag): string {
  const serves = [
    ...(definition.rules ?? []).map(
      (rule) => `${rule.attribute} in [${rule.in.join(', ')}] → ${rule.variant}`,
    ),
    ...(definition.split === undefined
      ? []
      : [
          `split by ${definition.split.by ?? 'targetingKey'}: ${Object.entries(definition.split.weights)
            .map(([variant, weight]) => `${variant} ${weight}%`)
            .join(', ')}`,
        ]),
    `default ${definition.defaultVariant}`,
  ];
  return [
    definition.key.padEnd(32),
    `v${version}`.padEnd(6),
    (definition.enabled ? 'on' : 'off').padEnd(4),
    serves.join('; '),
  ].join(' ');
}

function keyArgument(key: string | undefined): string {
  if (key === undefined) throw new InvalidArgumentError('key', 'a flag key', key);
  return key;
}

/** `keel flags ...`: returns the process exit code. */
export async function runFlagsCli(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { 'expect-version': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [group, command, target] = positionals;
  if (group !== 'flags' || command === undefined || values.help) {
    io.out(usage);
    return values.help ? 0 : 2;
  }
  return withCliDb(io, async (db) => {
    const store = new PostgresFlagStore(db);
    switch (command) {
      case 'list': {
        const flags = await store.list();
        for (const flag of flags) io.out(summary(flag));
        io.err(`${flags.length} flag(s)`);
        return 0;
      }
      case 'show': {
        const flag = await store.get(keyArgument(target));
        if (flag === undefined) throw new KeelError('KEEL_NOT_FOUND', `no flag ${target}`);
        io.out(JSON.stringify(flag.definition, null, 2));
        io.err(`version ${flag.version}`);
        return 0;
      }
      case 'set': {
        if (target === undefined) throw new InvalidArgumentError('file', 'a JSON file with the flag', target);
        let parsed: unknown;
        try {
          parsed = JSON.parse(await readFile(target, 'utf8'));
        } catch (cause) {
          throw new InvalidArgumentError(
            'file',
            `a readable JSON file (${(cause as Error).message})`,
            target,
          );
        }
        const expected = values['expect-version'];
        const expectedVersion = expected === undefined ? undefined : Number(expected);
        if (expectedVersion !== undefined && !(Number.isInteger(expectedVersion) && expectedVersion >= 0)) {
          throw new InvalidArgumentError('--expect-version', 'a version: 0 or more', expected);
        }
        const definition = parseFlagDefinition(parsed);
        const version = await store.put(definition, expectedVersion === undefined ? {} : { expectedVersion });
        io.out(`${definition.key} is at version ${version}`);
        return 0;
      }
      case 'enable':
      case 'disable': {
        const key = keyArgument(target);
        // Read, change one field, write at the version read; another writer in between: read again.
        const version = await retryOnConflict(async () => {
          const flag = await store.get(key);
          if (flag === undefined) throw new KeelError('KEEL_NOT_FOUND', `no flag ${key}`);
          const definition = { ...flag.definition, enabled: command === 'enable' };
          return store.put(definition, { expectedVersion: flag.version });
        });
        io.out(`${key} is ${command === 'enable' ? 'on' : 'off'} at version ${version}`);
        return 0;
      }
      case 'remove': {
        const key = keyArgument(target);
        if (!(await store.remove(key))) throw new KeelError('KEEL_NOT_FOUND', `no flag ${key}`);
        io.out(`${key} removed`);
        return 0;
      }
      default:
        io.err(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
        return 2;
    }
  });
}
