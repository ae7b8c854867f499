// The shop's API keys, from a shell: `npm run api-keys -- create <name> | revoke <id> | list`.
// The database comes from the environment, as for the shop (KEEL_DB, DATABASE_URL, KEEL_DATA_DIR);
// an embedded PGlite is held by a running shop: stop it first, or use a server.
import { withCliDb } from '../../../src/cli/cli-io.ts';
import { migrate, type Db } from '../../../src/db/index.ts';
import { KeelError } from '../../../src/errors/index.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { createApiKey, listApiKeys, revokeApiKey } from '../storage/api-keys-store.ts';

const usage = `npm run api-keys -- create <name>    a new key, shown once
npm run api-keys -- revoke <id>      the key stops working within 30 s on every api
npm run api-keys -- list             id, name, created, revoked`;

export async function runApiKeys(
  argv: readonly string[],
  out: (line: string) => void,
  open?: () => Promise<Db>,
): Promise<number> {
  const [command, argument] = argv;
  if (command !== 'create' && command !== 'revoke' && command !== 'list') {
    out(usage);
    return command === undefined || command === '--help' ? 0 : 2;
  }
  // Opened from the environment unless given; a keel error prints as `CODE: message`, exit 1.
  return withCliDb(
    { out, err: out, env: process.env, ...(open === undefined ? {} : { openDb: open }) },
    async (db) => {
      await migrate(db, await shopMigrations());
      switch (command) {
        case 'create': {
          const { id, key } = await createApiKey(db, argument ?? '');
          out(`id   ${id}`);
          out(`key  ${key}`);
          out('The key is not stored in clear: keep it now. Send it as Authorization: Bearer <key>.');
          return 0;
        }
        case 'revoke': {
          if (argument === undefined || !(await revokeApiKey(db, argument))) {
            throw new KeelError('KEEL_NOT_FOUND', `no live API key with id ${argument ?? '(none given)'}`);
          }
          out(`${argument} revoked`);
          return 0;
        }
        case 'list': {
          for (const key of await listApiKeys(db)) {
            out(
              [
                key.id,
                key.name.padEnd(24),
                key.createdAt.toISOString(),
                key.revokedAt?.toISOString() ?? 'live',
              ].join('  '),
            );
          }
          return 0;
        }
      }
    },
  );
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await runApiKeys(process.argv.slice(2), (line) => console.log(line));
}
