// The shop's analytics read model, from a shell: `npm run analytics -- rebuild | status | summary`.
// The database comes from the environment, as for the shop (KEEL_DB, DATABASE_URL, KEEL_DATA_DIR);
// an embedded PGlite is held by a running shop: stop it first, or use a server. On a server a
// rebuild is safe beside running workers: they and it take turns on the projection's position.
// With KEEL_BROKER=kafka (and KEEL_BROKER_URL, KEEL_BROKER_PREFIX as the shop has them) the order
// stream is the Kafka topic, and positions are offsets summed over its partitions.
import { withCliDb } from '../../../src/cli/cli-io.ts';
import { migrate, type Db } from '../../../src/db/index.ts';
import { readDailySales } from '../analytics/daily-sales.ts';
import { orderAnalytics } from '../analytics/order-analytics-store.ts';
import { orderStreamProgress, type OrderStream } from '../analytics/order-stream.ts';
import { brokerConfigFromEnv } from '../presets/broker-config.ts';
import { shopMigrations } from '../presets/open-shop.ts';
import { openOrderStream } from '../presets/order-stream-config.ts';

const usage = `npm run analytics -- rebuild    empty the read model and replay the order stream from its first entry
npm run analytics -- status     the stream position the model has applied, and the stream's last
npm run analytics -- summary    what GET /v1/analytics/orders answers, as JSON
npm run analytics -- daily      the last two weeks' closed days (the worker's daily-sales schedule)`;

/** `stream`: where the order stream lives; default from the environment (`KEEL_BROKER`). */
export async function runAnalytics(
  argv: readonly string[],
  out: (line: string) => void,
  open?: () => Promise<Db>,
  stream?: OrderStream,
): Promise<number> {
  const [command] = argv;
  if (command !== 'rebuild' && command !== 'status' && command !== 'summary' && command !== 'daily') {
    out(usage);
    return command === undefined || command === '--help' ? 0 : 2;
  }
  return withCliDb(
    { out, err: out, env: process.env, ...(open === undefined ? {} : { openDb: open }) },
    async (db) => {
      await migrate(db, await shopMigrations());
      const orderStream = stream ?? (await openOrderStream(brokerConfigFromEnv(process.env)));
      const runner = orderStream.analyticsRunner(db, {
        onSkipped: ({ place, envelope }, error) =>
          out(`skipped ${place.text} (${envelope.type}): ${String(error)}`),
      });
      switch (command) {
        case 'rebuild': {
          await runner.rebuild();
          const applied = await runner.catchUp();
          out(`replayed ${applied} event(s) of ${orderStream.name} into ${runner.projection}`);
          return 0;
        }
        case 'status': {
          const { position, head } = await orderStreamProgress(db, orderStream);
          out(`${runner.projection}  position ${position}  head ${head}  lag ${head - position}`);
          return 0;
        }
        case 'summary': {
          out(JSON.stringify(await orderAnalytics(db, 10, orderStream), null, 2));
          return 0;
        }
        case 'daily': {
          const days = await readDailySales(db);
          if (days.length === 0)
            out('no day closed yet (the worker closes each day after midnight: KEEL_DAILY_SALES)');
          for (const d of days)
            out(
              `${d.day} ${d.timeZone}  orders ${d.orders}  confirmed ${d.confirmed}  cancelled ${d.cancelled}  revenue ${(d.revenueCents / 100).toFixed(2)}`,
            );
          return 0;
        }
      }
    },
  );
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await runAnalytics(process.argv.slice(2), (line) => console.log(line));
}
