// `npm run package [-- <dir>]`: keel's library as an npm tarball (keel-<version>.tgz in <dir>,
// default the checkout), compiled, with its type declarations and sources.
//
// This checkout's package.json is the workspace's: the shop, its deployment and the test tools
// need every client keel has an adapter for. The package's manifest is written here instead:
// the same version and subpaths, the few packages every subpath needs as dependencies, and the
// rest as optional peers, so `import { retry } from 'keel/resilience'` installs no Kafka,
// OpenTelemetry or WebAssembly PostgreSQL. test/deploy/package.test.ts checks the split against
// what the compiled files import.
//
// The workspace's own `exports` point at the TypeScript sources: the examples import keel by name
// (`keel/db`), as a project that installed it does, and run through tsx and vitest. The shop
// imports by path, since its compiled image runs on node, which cannot load those sources.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));

/** Imported by the parts most services use (keel/db on a server, the outbox, the queue): always installed. */
export const libraryDependencies = ['pg', 'pg-logical-replication', 'uuid', '@types/pg'];

/** Each optional peer and the subpaths that need it: installed by the services that use them. */
export const optionalPeers: Record<string, string> = {
  '@electric-sql/pglite': 'keel/db: the embedded database (openPgliteDb, KEEL_DB=pglite)',
  '@platformatic/kafka': 'keel/messaging/kafka',
  '@nats-io/jetstream': 'keel/messaging/nats',
  '@nats-io/transport-node': 'keel/messaging/nats',
  amqplib: 'keel/messaging/rabbitmq',
  ioredis: 'keel/messaging/redis',
  '@opentelemetry/api': 'keel/observability',
  '@opentelemetry/context-async-hooks': 'keel/observability',
  '@opentelemetry/core': 'keel/observability',
  '@opentelemetry/exporter-prometheus': 'keel/observability',
  '@opentelemetry/exporter-trace-otlp-http': 'keel/observability',
  '@opentelemetry/resources': 'keel/observability',
  '@opentelemetry/sdk-metrics': 'keel/observability',
  '@opentelemetry/sdk-trace-base': 'keel/observability',
  '@opentelemetry/semantic-conventions': 'keel/observability',
  '@openfeature/server-sdk': 'keel/flags',
  croner: 'keel/schedule: cron expressions',
  fastify: 'keel/idempotency and keel/observability: types of the fastify plugins',
  zod: 'keel/messaging: types of defineMessage; keel/contracts',
  vitest: 'keel/testing: the conformance suites',
  'fast-check': 'keel/testing: the conformance suites',
  ajv: 'keel/testing: openApiResponses',
  'ajv-formats': 'keel/testing: openApiResponses',
};

interface WorkspaceManifest {
  name: string;
  version: string;
  description: string;
  license: string;
  engines: Record<string, string>;
  exports: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

/** The package's manifest, from the workspace's: versions as `^` ranges of the ones pinned and tested here. */
export function packageManifest(workspace: WorkspaceManifest): Record<string, unknown> {
  const pinned = { ...workspace.devDependencies, ...workspace.dependencies };
  const range = (name: string): string => {
    const version = pinned[name];
    if (version === undefined) throw new Error(`${name} is not a dependency of the workspace`);
    return `^${version}`;
  };
  const exports = Object.fromEntries(
    Object.entries(workspace.exports).map(([subpath, source]) => {
      const compiled = source.replace(/^\.\/src\//, './dist/src/').replace(/\.ts$/, '');
      return [subpath, { types: `${compiled}.d.ts`, default: `${compiled}.js` }];
    }),
  );
  const peers = Object.keys(optionalPeers).sort();
  return {
    name: workspace.name,
    version: workspace.version,
    description: workspace.description,
    type: 'module',
    license: workspace.license,
    engines: workspace.engines,
    exports,
    bin: { keel: './dist/src/cli/keel.js' },
    files: ['dist/src/', 'src/', '!src/**/*.test.ts'],
    dependencies: Object.fromEntries(libraryDependencies.sort().map((name) => [name, range(name)])),
    peerDependencies: Object.fromEntries(peers.map((name) => [name, range(name)])),
    peerDependenciesMeta: Object.fromEntries(peers.map((name) => [name, { optional: true }])),
  };
}

/** Builds and packs the library into `destination`; returns the tarball's path. */
export function packLibrary(destination: string): string {
  mkdirSync(destination, { recursive: true });
  mkdirSync(path.join(root, 'node_modules', '.cache'), { recursive: true });
  const stage = mkdtempSync(path.join(root, 'node_modules', '.cache', 'keel-package-'));
  try {
    execFileSync('bash', ['scripts/build.sh', path.join(stage, 'dist')], { cwd: root, stdio: 'inherit' });
    rmSync(path.join(stage, 'dist', 'apps'), { recursive: true });
    cpSync(path.join(root, 'src'), path.join(stage, 'src'), { recursive: true });
    cpSync(path.join(root, 'README.md'), path.join(stage, 'README.md'));
    const workspace = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as WorkspaceManifest;
    writeFileSync(
      path.join(stage, 'package.json'),
      JSON.stringify(packageManifest(workspace), null, 2) + '\n',
    );
    const packed = execFileSync(
      'npm',
      ['pack', '--ignore-scripts', '--json', '--pack-destination', destination],
      {
        cwd: stage,
        encoding: 'utf8',
      },
    );
    const [{ filename }] = JSON.parse(packed) as [{ filename: string }];
    return path.join(destination, filename);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  console.log(packLibrary(path.resolve(process.argv[2] ?? root)));
}
