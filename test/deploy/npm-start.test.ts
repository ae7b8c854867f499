import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../until.ts';
import { postOrder, startShopProcess, type ShopProcess } from './shop-process.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dataDir = mkdtempSync(path.join(tmpdir(), 'keel-npm-start-'));

// The README's first command: `npm install && npm start`, the whole shop on the embedded
// database. Run as the script says (node with tsx's loader on the sources), in a data directory
// of its own; the last test runs npm itself.
describe('npm start', () => {
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  const start = (): Promise<ShopProcess> => {
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    const [runner, ...args] = manifest.scripts.start!.split(' ');
    expect([runner, args.slice(0, -1)]).toEqual(['node', ['--import', 'tsx']]);
    return startShopProcess(args, { cwd: root, env: { KEEL_DATA_DIR: dataDir } });
  };

  const status = async (address: string, location: string): Promise<string> =>
    ((await (await fetch(`${address}${location}`)).json()) as { status: string }).status;

  it('shows where it runs, confirms an order, and still has it, and its key, after a restart', async () => {
    let location: string;
    let orderId: string;
    const first = await start();
    try {
      const screen = first.output();
      expect(screen).toContain('keel shop is running — api + worker + relay');
      expect(screen).toContain(`data       ${path.join(dataDir, 'pglite')} (embedded PostgreSQL: PGlite`);
      expect(screen).toContain('Data survives a restart.');
      expect(screen).toMatch(/curl -i -X POST http:\/\/\S+\/v1\/orders/);
      const placed = await postOrder(first.address, 'npm-start-1');
      expect(placed.status).toBe(202);
      location = placed.headers.get('location')!;
      orderId = ((await placed.json()) as { id: string }).id;
      // The relay publishes the event and the worker's saga confirms the order, as the screen says.
      await until(async () => (await status(first.address, location)) === 'CONFIRMED', 15_000, 'CONFIRMED');
    } finally {
      expect(await first.stop()).toBe(0);
    }

    const second = await start();
    try {
      expect(await status(second.address, location)).toBe('CONFIRMED');
      const replay = await postOrder(second.address, 'npm-start-1');
      expect(replay.status).toBe(202);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(((await replay.json()) as { id: string }).id).toBe(orderId);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 90_000);

  it('drains and exits when npm start is sent a SIGTERM, which npm passes only to its shell', async () => {
    const npm = await startShopProcess(['start'], {
      command: process.platform === 'win32' ? 'npm.cmd' : 'npm',
      cwd: root,
      env: { KEEL_DATA_DIR: dataDir },
      ownGroup: true,
    });
    try {
      const placed = await postOrder(npm.address, 'npm-start-signal');
      expect(placed.status).toBe(202);
      await npm.stop();
      // Whatever npm's own exit code: the shop (two processes down) drained and closed its output.
      await Promise.race([
        npm.closed(),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`the shop kept running:\n${npm.output()}`)), 20_000),
        ),
      ]);
      expect(npm.output()).toMatch(/parent process \d+ exited: draining/);
      expect(npm.output()).toContain('stopped cleanly');
      await expect(fetch(`${npm.address}/healthz`)).rejects.toThrow();
    } finally {
      // A shop that kept running would outlive the suite.
      npm.killGroup();
    }
  }, 60_000);
});
