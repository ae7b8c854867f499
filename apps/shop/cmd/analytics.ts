// The shop's analytics read model, from a shell: `npm run analytics -- rebuild | status | summary`.
// The database comes from the environment, as for the shop (KEEL_DB, DATABASE_URL, KEEL_DATA_DIR);
// an embedded PGlite is held by a running shop: stop it first, or use a server. On a server a
// rebuild is safe beside running workers: they and it take turns on the projection's position.
import { withCliDb } from '../../../src/cli/cli-io.ts';
import { migrate, type Db } from '../../../src/db/index.ts';
import { orderAnalyticsRunner } from '../analytics/order-analytics-projection.ts';
import { orderAnalytics } from '../analytics/order-analytics-store.ts';
import { shopMigrations } from '../presets/open-shop.ts';

const usage = `npm run analytics -- rebuild    empty the read model and replay the order stream from its first entry
npm run analytics -- status     the stream position the model has applied, and the stream's last
npm run analytics -- summary    what GET /v1/analytics/orders answers, as JSON`;

export async function runAnalytics(
  argv: readonly string[],
  out: (line: string) => void,
  open?: () => Promise<Db>,
): Promise<number> {
  const [command] = argv;
  if (command !== 'rebuild' && command !== 'status' && command !== 'summary') {
    out(usage);
    return command === undefined || command === '--help' ? 0 : 2;
  }
  return withCliDb(
    { out, err: out, env: process.env, ...(open === undefined ? {} : { openDb: open }) },
    async (db) => {
      await migrate(db, await shopMigrations());
      const runner = orderAnalyticsRunner(db, {
        onSkipped: (entry, error) =>
          out(`skipped position ${entry.position} (${entry.envelope.type}): ${String(error)}`),
      });
      switch (command) {
        case 'rebuild': {
          await runner.rebuild();
          const applied = await runner.catchUp();
          out(`replayed ${applied} event(s) of ${runner.stream} into ${runner.projection}`);
          return 0;
        }
        case 'status': {
          const position = await runner.position();
          const lag = await runner.lag();
          out(`${runner.projection}  position ${position}  head ${position + lag}  lag ${lag}`);
          return 0;
        }
        case 'summary': {
          out(JSON.stringify(await orderAnalytics(db, 10), null, 2));
          return 0;
        }
      }
    },
  );
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await runAnalytics(process.argv.slice(2), (line) => console.log(line));
}
