import { runUntilSignal } from '../../../src/service/index.ts';
import type { ShopRole } from '../app.ts';
import { openShop } from '../presets/open-shop.ts';
import { firstScreen } from './first-screen.ts';

/** Shared by every entry point: open, start, print where it runs, drain on SIGTERM/SIGINT. */
export async function runShop(roles: readonly ShopRole[], options: { banner: boolean }): Promise<void> {
  try {
    const { shop, db } = await openShop({ roles });
    await runUntilSignal(shop, { drainMs: Number(process.env.KEEL_DRAIN_MS ?? 10_000) });
    if (options.banner) {
      const address = shop.server?.address ?? '(no HTTP listener in this process)';
      process.stdout.write(firstScreen(address, db, roles) + '\n');
    }
  } catch (error) {
    process.stderr.write(`shop failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
