import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postOrder, startShopProcess } from './shop-process.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
// Inside the checkout, so the compiled files resolve packages from its node_modules.
const out = path.join(
  root,
  'node_modules',
  '.cache',
  `keel-build-${process.pid}-${randomUUID().slice(0, 8)}`,
);

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.js'))
    .map((name) => path.join(dir, name));
}

/** The package a bare specifier names: `pino`, `@nats-io/jetstream` (from `@nats-io/jetstream/lib/x`). */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

// The Docker image runs what `npm run build` writes, on node alone, with production dependencies.
describe('npm run build', () => {
  beforeAll(async () => {
    await promisify(execFile)('bash', ['scripts/build.sh', out], { cwd: root });
  }, 120_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('compiles files that import only node built-ins, each other and production dependencies', () => {
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const allowed = new Set([...Object.keys(manifest.dependencies), ...builtinModules]);
    const files = jsFiles(out);
    expect(files.length).toBeGreaterThan(50);
    const imported = new Set<string>();
    for (const file of files) {
      const source = readFileSync(file, 'utf8');
      for (const match of source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
        const specifier = match[1]!;
        if (specifier.startsWith('.')) {
          // A relative import was rewritten from .ts to .js, and names a file the build wrote.
          expect(specifier, file).toMatch(/\.js$/);
          expect(existsSync(path.resolve(path.dirname(file), specifier)), `${specifier} in ${file}`).toBe(
            true,
          );
        } else if (!specifier.startsWith('node:')) imported.add(packageOf(specifier));
      }
    }
    expect(imported).toContain('fastify');
    expect(imported).toContain('pg');
    expect([...imported].filter((name) => !allowed.has(name))).toEqual([]);
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
