import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
// Inside the checkout, so the installed package resolves its dependencies from its node_modules,
// as it would from the project's own after `npm install keel`.
const stage = path.join(
  root,
  'node_modules',
  '.cache',
  `keel-package-${process.pid}-${randomUUID().slice(0, 8)}`,
);
const packageRoot = path.join(stage, 'package');
const consumer = path.join(stage, 'consumer');
const installed = path.join(consumer, 'node_modules', 'keel');

interface Manifest {
  exports: Record<string, { types: string; default: string }>;
  bin: Record<string, string>;
}

const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as Manifest;
let packed: string[] = [];

/** `./dist/src/x.js` as the tarball lists it: `dist/src/x.js`. */
const inPackage = (file: string): string => path.posix.normalize(file);

// What `npm publish` would ship: the package.json's files, from a checkout with `npm run build` done
// (its prepack), into a project that runs it with node alone or type-checks against it.
describe('the npm package', () => {
  beforeAll(async () => {
    mkdirSync(packageRoot, { recursive: true });
    await run('bash', ['scripts/build.sh', path.join(packageRoot, 'dist')], { cwd: root });
    for (const file of ['package.json', 'README.md', 'src']) {
      cpSync(path.join(root, file), path.join(packageRoot, file), { recursive: true });
    }
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', stage], {
      cwd: packageRoot,
    });
    const [result] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
    packed = result.files.map((file) => file.path);
    mkdirSync(installed, { recursive: true });
    await run('tar', ['-xzf', path.join(stage, result.filename), '-C', installed, '--strip-components=1']);
    cpSync(path.join(root, 'test/deploy/package-consumer'), consumer, { recursive: true });
    writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  }, 120_000);
  afterAll(() => rmSync(stage, { recursive: true, force: true }));

  it('ships every export with its declarations, and neither tests nor the shop', () => {
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      expect(packed, subpath).toContain(inPackage(target.default));
      expect(packed, subpath).toContain(inPackage(target.types));
    }
    expect(packed).toContain(inPackage(manifest.bin['keel']!));
    expect(packed.filter((file) => /\.test\.[jt]s$|\.test\.d\.ts$/.test(file))).toEqual([]);
    expect(packed.filter((file) => file.startsWith('dist/apps/') || file.startsWith('apps/'))).toEqual([]);
    // The sources beside the declarations' maps, for a reader's go-to-definition.
    expect(packed).toContain('src/resilience/retry.ts');
    expect(packed).toContain('dist/src/resilience/retry.d.ts.map');
  });

  it('runs with node alone: every subpath loads, a retry, an order and its event through the outbox', async () => {
    const { stdout } = await run('node', ['main.mjs'], { cwd: consumer });
    expect(stdout.trim().split('\n')).toEqual([
      `loaded ${Object.keys(manifest.exports).length} subpaths`,
      'retry: 42 after 3 calls',
      'outbox: orders order.placed.v1 o-1',
      'bad input: KEEL_INVALID_ARGUMENT',
    ]);
  }, 60_000);

  it("type-checks a strict TypeScript project against the package's declarations", async () => {
    writeFileSync(
      path.join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          strict: true,
          noEmit: true,
          // keel's own declarations are checked too; their imports must resolve in the package.
          skipLibCheck: false,
        },
        files: ['index.ts'],
      }),
    );
    const tsc = path.join(root, 'node_modules', '.bin', 'tsc');
    const output = await run(tsc, ['-p', '.'], { cwd: consumer }).then(
      ({ stdout }) => stdout,
      (error: { stdout: string }) => error.stdout,
    );
    // Other packages' declarations are theirs (PGlite's need Emscripten's types); the project's
    // and keel's must be clean. index.ts holds a @ts-expect-error that fails if a type is `any`.
    const errors = output
      .split('\n')
      .filter((line) => /error TS\d+/.test(line))
      .filter((line) => !line.startsWith('..') || line.includes('node_modules/keel/'));
    expect(errors).toEqual([]);
  }, 60_000);

  it('installs the keel command', async () => {
    const bin = path.join(installed, manifest.bin['keel']!);
    expect(readFileSync(bin, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    const { stdout } = await run('node', [bin, '--help'], { cwd: consumer });
    expect(stdout).toMatch(/^keel — operate a keel service's outbox/);
  });
});
