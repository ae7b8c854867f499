import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importsOf, jsFiles, packagesReachedFrom } from './compiled-imports.ts';
import { postOrder, startShopProcess } from './shop-process.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
// Inside the checkout, so the compiled files resolve packages from its node_modules.
const out = path.join(
  root,
  'node_modules',
  '.cache',
  `keel-build-${process.pid}-${randomUUID().slice(0, 8)}`,
);

const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

// The Docker image runs what `npm run build` writes, on node alone, with production dependencies.
describe('npm run build', () => {
  beforeAll(async () => {
    await promisify(execFile)('bash', ['scripts/build.sh', out], { cwd: root });
  }, 120_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('compiles relative imports to .js files it wrote', () => {
    const files = jsFiles(out);
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) {
      for (const imported of importsOf(file).files) {
        // A relative import was rewritten from .ts to .js, and names a file the build wrote.
        expect(imported, file).toMatch(/\.js$/);
        expect(existsSync(imported), `${imported} in ${file}`).toBe(true);
      }
    }
  });

  it("reaches only production dependencies from the shop's and the keel command's entry points", () => {
    const entries = [
      ...readdirSync(path.join(out, 'apps/shop/cmd'))
        .filter((name) => name.endsWith('.js'))
        .map((name) => path.join(out, 'apps/shop/cmd', name)),
      path.join(out, 'src/cli/keel.js'),
    ];
    const reached = packagesReachedFrom(entries);
    expect(reached).toContain('fastify');
    expect(reached).toContain('pg');
    // The image installs with --omit=dev: no dev dependency is there.
    expect([...reached].filter((name) => !(name in manifest.dependencies))).toEqual([]);
  });

  it('runs the whole shop with node: it takes an order and answers a replay', async () => {
    const shop = await startShopProcess([path.join(out, 'apps/shop/cmd/all-in-one.js')], {
      cwd: root,
      env: { KEEL_DATA_DIR: 'memory://' },
    });
    try {
      const first = await postOrder(shop.address, 'build-test-1');
      expect(first.status).toBe(202);
      const order = (await first.json()) as { id: string };
      const replay = await postOrder(shop.address, 'build-test-1');
      expect(replay.status).toBe(202);
      expect(((await replay.json()) as { id: string }).id).toBe(order.id);
      expect((await fetch(`${shop.address}${first.headers.get('location')}`)).status).toBe(200);
    } finally {
      // SIGTERM drains and exits 0, as the image's stop relies on.
      expect(await shop.stop()).toBe(0);
    }
  }, 60_000);
});
