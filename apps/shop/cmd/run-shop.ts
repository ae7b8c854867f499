import { keelMeter } from '../../../src/observability/index.ts';
import { runUntilSignal } from '../../../src/service/index.ts';
import type { ShopRole } from '../app.ts';
import { shopConfigFromEnv } from '../config.ts';
import { instrumentShop, shopObservabilityFromEnv } from '../observability.ts';
import { openShop } from '../presets/open-shop.ts';
import { firstScreen } from './first-screen.ts';

/**
 * Shared by every entry point: register OpenTelemetry from the environment, open, instrument
 * (`/metrics`, route spans, worker and outbox metrics), start, print where it runs, drain on
 * SIGTERM/SIGINT (or, under `npm start`, when npm's shell is gone), then flush the exporters.
 */
export async function runShop(roles: readonly ShopRole[], options: { banner: boolean }): Promise<void> {
  try {
    const observability = shopObservabilityFromEnv();
    const { shop, db, broker } = await openShop({ roles, meter: keelMeter() });
    const instrumented = instrumentShop(shop, {
      meter: keelMeter(),
      ...(observability.prometheus ? { prometheus: observability.prometheus } : {}),
    });
    await runUntilSignal(shop, {
      drainMs: Number(process.env.KEEL_DRAIN_MS ?? 10_000),
      // npm runs the start script in `sh -c`, which a SIGTERM to npm kills without passing it on.
      stopWhenParentExits: process.env.npm_lifecycle_event === 'start',
      onStopped: () => {
        instrumented.dispose();
        // Flush the last spans before exiting; an exporter that hangs must not keep the process.
        void Promise.race([
          observability.shutdown(),
          new Promise((resolve) => setTimeout(resolve, 5_000)),
        ]).finally(() => process.exit(0));
      },
    });
    if (options.banner) {
      const address = shop.server?.address ?? '(no HTTP listener in this process)';
      const config = shopConfigFromEnv(process.env, roles);
      // Only a worker sends mail and closes days.
      const worker = roles.includes('worker');
      const mail = worker ? config.mail : undefined;
      const dailySales = worker ? config.dailySales : undefined;
      process.stdout.write(
        firstScreen(address, db, roles, config.outbox, {
          broker,
          ...(mail ? { mail } : {}),
          ...(dailySales ? { dailySales } : {}),
        }) + '\n',
      );
    }
  } catch (error) {
    process.stderr.write(`shop failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
