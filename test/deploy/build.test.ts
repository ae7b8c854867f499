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

/** What a compiled file imports: relative files (resolved) and packages, node built-ins left out. */
function importsOf(file: string): { files: string[]; packages: string[] } {
  const files: string[] = [];
  const packages: string[] = [];
  const source = readFileSync(file, 'utf8');
  for (const match of source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
    const specifier = match[1]!;
    if (specifier.startsWith('.')) files.push(path.resolve(path.dirname(file), specifier));
    else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier))
      packages.push(packageOf(specifier));
  }
  return { files, packages };
}

/** The packages imported by `entries` and every compiled file they reach. */
function packagesReachedFrom(entries: string[]): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const pending = [...entries];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const found = importsOf(file);
    pending.push(...found.files);
    for (const name of found.packages) packages.add(name);
  }
  return packages;
}

const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
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

  it('runs the shop and the keel command on production dependencies alone', () => {
    const entries = [
      ...readdirSync(path.join(out, 'apps/shop/cmd'))
        .filter((name) => name.endsWith('.js'))
        .map((name) => path.join(out, 'apps/shop/cmd', name)),
      path.join(out, 'src/cli/keel.js'),
    ];
    const reached = packagesReachedFrom(entries);
    expect(reached).toContain('fastify');
    expect(reached).toContain('pg');
    // The image installs with --omit=dev: neither dev nor optional peer dependencies are there.
    expect([...reached].filter((name) => !(name in manifest.dependencies))).toEqual([]);
  });

  it('lets only keel/testing import its optional peers (vitest, fast-check)', () => {
    const optional = Object.keys(manifest.peerDependencies).filter(
      (name) => manifest.peerDependenciesMeta[name]?.optional === true,
    );
    expect(optional.sort()).toEqual(['fast-check', 'vitest']);
    for (const file of jsFiles(path.join(out, 'src'))) {
      const allowed = file.startsWith(path.join(out, 'src/testing/'))
        ? [...Object.keys(manifest.dependencies), ...optional]
        : Object.keys(manifest.dependencies);
      expect(
        importsOf(file).packages.filter((name) => !allowed.includes(name)),
        file,
      ).toEqual([]);
    }
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
