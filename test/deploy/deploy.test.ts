import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

// Docker does not run here: these tests keep deploy/ honest by checking what it names exists.
describe('deploy/docker-compose.yml', () => {
  const compose = parse(read('deploy/docker-compose.yml'), { merge: true }) as {
    services: Record<string, ComposeService>;
  };

  it('runs PostgreSQL, RabbitMQ and Kafka, the shop as api, relay and worker, and Prometheus', () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      'api',
      'kafka',
      'postgres',
      'prometheus',
      'rabbitmq',
      'relay',
      'worker',
    ]);
  });

  it('starts each shop process from an entry point that exists, against PostgreSQL, after it is healthy', () => {
    for (const name of ['api', 'relay', 'worker']) {
      const service = compose.services[name]!;
      const entry = service.command?.at(-1);
      expect(entry, name).toBe(`dist/apps/shop/cmd/${name}.js`);
      expectBuilt(entry!);
      expect(service.environment?.KEEL_DB, name).toBe('pg');
      expect(service.environment?.DATABASE_URL, name).toMatch(/@postgres:5432\//);
      expect(service.depends_on?.postgres?.condition, name).toBe('service_healthy');
      expect(existsSync(new URL(`deploy/${service.build!.dockerfile.replace(/^deploy\//, '')}`, root))).toBe(
        true,
      );
    }
  });

  it('gives the api a readiness check on /readyz and listens on all interfaces', () => {
    const api = compose.services.api!;
    expect(api.environment?.HOST).toBe('0.0.0.0');
    expect(api.healthcheck?.test.join(' ')).toContain('/readyz');
  });

  it('names only environment variables the shop reads', () => {
    const known = new Set([
      'KEEL_DB',
      'DATABASE_URL',
      'LOG_LEVEL',
      'KEEL_DRAIN_MS',
      'HOST',
      'PORT',
      'KEEL_METRICS_PORT',
    ]);
    const source = [
      'apps/shop/config.ts',
      'apps/shop/cmd/run-shop.ts',
      'apps/shop/logger.ts',
      'src/db/open-db.ts',
    ]
      .map(read)
      .join('\n');
    for (const name of ['api', 'relay', 'worker']) {
      for (const variable of Object.keys(compose.services[name]!.environment ?? {})) {
        expect(known.has(variable) && source.includes(variable), variable).toBe(true);
      }
    }
  });
});

describe('deploy/Dockerfile', () => {
  it('copies what the build needs, and runs a compiled entry point of the build', () => {
    const dockerfile = read('deploy/Dockerfile');
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const path of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'scripts/build.sh',
      'src',
      'apps',
    ]) {
      expect(copied, path).toContain(path);
      expect(existsSync(new URL(path, root)), path).toBe(true);
    }
    expect(dockerfile).toMatch(/^RUN npm run build$/m);
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev/m);
    const cmd = /CMD \[(.*)\]/.exec(dockerfile)?.[1];
    expectBuilt((JSON.parse(`[${cmd}]`) as string[]).at(-1)!);
  });
});

/**
 * `dist/<path>.js` is what `npm run build` writes from `<path>.ts`, one of tsconfig.build.json's
 * files (test/deploy/build.test.ts runs the build and the compiled shop).
 */
function expectBuilt(entry: string): void {
  const source = /^dist\/(.+)\.js$/.exec(entry)?.[1];
  expect(source, entry).toBeDefined();
  const build = JSON.parse(read('tsconfig.build.json').replace(/^\s*\/\/.*$/gm, '')) as { files: string[] };
  expect(build.files, entry).toContain(`${source}.ts`);
  expect(existsSync(new URL(`${source}.ts`, root)), `${source}.ts`).toBe(true);
}
