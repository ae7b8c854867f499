import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultDatabaseUrl } from '../../src/db/open-db.ts';
import { optionalPeers, packLibrary } from '../../scripts/package.ts';
import { importsOf, jsFiles } from './compiled-imports.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const fixtures = path.join(root, 'test/deploy/package-consumer');
const stage = mkdtempSync(path.join(tmpdir(), 'keel-package-'));
// Inside the checkout, so the installed package finds its peers in the checkout's node_modules, as
// in a project that installed them all.
const withPeers = path.join(
  root,
  'node_modules',
  '.cache',
  `keel-consumer-${process.pid}-${randomUUID().slice(0, 8)}`,
);
// Outside it: `npm install keel` and nothing else.
const alone = path.join(stage, 'alone');
const installed = path.join(withPeers, 'node_modules', 'keel');

interface PackageManifest {
  exports: Record<string, { types: string; default: string }>;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
}

let manifest: PackageManifest;
let packed: string[] = [];

function project(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  cpSync(fixtures, dir, { recursive: true });
}

/** `./dist/src/x.js` as the tarball lists it: `dist/src/x.js`. */
const inPackage = (file: string): string => path.posix.normalize(file);

// What `npm publish` would ship (`npm run package`), installed into projects that use it.
describe('the npm package', () => {
  beforeAll(async () => {
    const tarball = packLibrary(stage);
    const { stdout } = await run('tar', ['-tzf', tarball]);
    packed = stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.replace(/^package\//, ''));
    project(withPeers);
    mkdirSync(installed, { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
    manifest = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as PackageManifest;
    project(alone);
    await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: alone });
  }, 180_000);
  afterAll(() => {
    rmSync(stage, { recursive: true, force: true });
    rmSync(withPeers, { recursive: true, force: true });
  });

  it('ships every export with its declarations, the keel bin and the sources; neither tests nor the shop', () => {
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      expect(packed, subpath).toContain(inPackage(target.default));
      expect(packed, subpath).toContain(inPackage(target.types));
    }
    expect(packed).toContain(inPackage(manifest.bin['keel']!));
    expect(packed.filter((file) => /\.test\.(js|ts|d\.ts)$/.test(file))).toEqual([]);
    expect(packed.filter((file) => /^(dist\/)?apps\//.test(file))).toEqual([]);
    // The sources beside the declarations' maps, for a reader's go-to-definition.
    expect(packed).toContain('src/resilience/retry.ts');
    expect(packed).toContain('dist/src/resilience/retry.d.ts.map');
  });

  it('declares what its files import: a few dependencies, every other package an optional peer', () => {
    const imported = new Set(
      jsFiles(path.join(installed, 'dist')).flatMap((file) => importsOf(file).packages),
    );
    const declared = [...Object.keys(manifest.dependencies), ...Object.keys(manifest.peerDependencies)];
    expect([...imported].filter((name) => !declared.includes(name))).toEqual([]);
    // No peer is there for nothing: each is imported, or (fastify, zod) named by the declarations.
    const typesOnly = ['fastify', 'zod'];
    expect(
      Object.keys(optionalPeers).filter((name) => !imported.has(name) && !typesOnly.includes(name)),
    ).toEqual([]);
    for (const name of Object.keys(manifest.peerDependencies)) {
      expect(manifest.peerDependenciesMeta[name]?.optional, name).toBe(true);
    }
    expect(Object.keys(manifest.dependencies).sort()).toEqual([
      '@types/pg',
      'pg',
      'pg-logical-replication',
      'uuid',
    ]);
  });

  it('installed alone, runs every subpath but the adapters, observability, testing and flags, which name what they need', async () => {
    const { stdout } = await run('node', ['lean.mjs'], {
      cwd: alone,
      env: { ...process.env, DATABASE_URL: process.env['DATABASE_URL'] ?? defaultDatabaseUrl },
    });
    expect(stdout.trim().split('\n')).toEqual([
      'keel/errors: loads',
      'keel/time: loads',
      'keel/service: loads',
      'keel/db: loads',
      'keel/messaging: loads',
      'keel/messaging/kafka: needs @platformatic/kafka',
      'keel/messaging/redis: needs ioredis',
      'keel/messaging/rabbitmq: needs amqplib',
      'keel/messaging/nats: needs @nats-io/transport-node',
      'keel/outbox: loads',
      'keel/observability: needs @opentelemetry/api',
      'keel/ordering: loads',
      'keel/resilience: loads',
      'keel/saga: loads',
      'keel/schedule: needs croner',
      'keel/testing: needs vitest',
      'keel/idempotency: loads',
      'keel/consistency: loads',
      'keel/contracts: needs zod',
      'keel/flags: needs @openfeature/server-sdk',
      'openPgliteDb: KEEL_DB_UNAVAILABLE (@electric-sql/pglite)',
      'retry: 42 after 2 calls',
      'outbox on PostgreSQL: orders order.placed.v1',
    ]);
  }, 60_000);

  it('with its peers, runs with node alone: every subpath, a retry, an order and its event through the outbox on PGlite', async () => {
    const { stdout } = await run('node', ['main.mjs'], { cwd: withPeers });
    expect(stdout.trim().split('\n')).toEqual([
      `loaded ${Object.keys(manifest.exports).length} subpaths`,
      'retry: 42 after 3 calls',
      'outbox: orders order.placed.v1 o-1',
      'bad input: KEEL_INVALID_ARGUMENT',
    ]);
  }, 60_000);

  it("type-checks a strict TypeScript project against the package's declarations", async () => {
    writeFileSync(
      path.join(withPeers, 'tsconfig.json'),
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
    const output = await run(tsc, ['-p', '.'], { cwd: withPeers }).then(
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
    const bin = path.join(alone, 'node_modules', '.bin', 'keel');
    const { stdout } = await run(bin, ['--help'], { cwd: alone });
    expect(stdout).toMatch(/^keel — operate a keel service's outbox/);
  });
});
