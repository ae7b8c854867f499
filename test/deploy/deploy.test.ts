import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

const root = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

/** The variables the deploy files may set, each one the shop reads. */
const knownVariables = new Set([
  'KEEL_DB',
  'DATABASE_URL',
  'LOG_LEVEL',
  'KEEL_DRAIN_MS',
  'HOST',
  'PORT',
  'KEEL_METRICS_PORT',
  'KEEL_DB_SCHEMA',
  'KEEL_DB_QUERY_TIMEOUT_MS',
  'KEEL_BROKER',
  'KEEL_BROKER_URL',
  'KEEL_PAYMENTS_URL',
  'KEEL_SMTP_URL',
  'KEEL_PAYMENTS_PORT',
  'KEEL_PAYMENTS_FAIL_RATE',
  'KEEL_PAYMENTS_STALL_RATE',
  'KEEL_PAYMENTS_STALL_MS',
]);
const shopSource = [
  'apps/shop/config.ts',
  'apps/shop/cmd/run-shop.ts',
  'apps/shop/logger.ts',
  'apps/shop/presets/broker-config.ts',
  'apps/shop/notifications/mail-config.ts',
  'apps/shop/payments/payments-config.ts',
  'apps/shop/payments/provider-config.ts',
  'src/db/open-db.ts',
]
  .map(read)
  .join('\n');

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

  it('runs PostgreSQL, RabbitMQ and Kafka, the shop as api, relay and worker, its payment provider and mail server, Prometheus and Grafana', () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      'api',
      'grafana',
      'kafka',
      'mailpit',
      'payments',
      'postgres',
      'prometheus',
      'rabbitmq',
      'relay',
      'worker',
    ]);
  });

  it('starts each shop process from an entry point that exists, against PostgreSQL, after it is healthy', () => {
    for (const name of ['api', 'relay', 'worker', 'payments']) {
      const service = compose.services[name]!;
      const entry = service.command?.at(-1);
      expect(entry, name).toBe(`dist/apps/shop/cmd/${name === 'payments' ? 'payment-provider' : name}.js`);
      expectBuilt(entry!);
      expect(service.environment?.KEEL_DB, name).toBe('pg');
      expect(service.environment?.DATABASE_URL, name).toMatch(/@postgres:5432\//);
      expect(service.depends_on?.postgres?.condition, name).toBe('service_healthy');
      expect(existsSync(new URL(`deploy/${service.build!.dockerfile.replace(/^deploy\//, '')}`, root))).toBe(
        true,
      );
    }
  });

  it('runs the shop on RabbitMQ; the worker charges the payment service and mails through Mailpit', () => {
    for (const name of ['api', 'relay', 'worker']) {
      const service = compose.services[name]!;
      expect(service.environment?.KEEL_BROKER, name).toBe('rabbitmq');
      expect(service.environment?.KEEL_BROKER_URL, name).toMatch(/^amqp:\/\/.*@rabbitmq:5672$/);
      expect(service.depends_on?.rabbitmq?.condition, name).toBe('service_healthy');
    }
    const worker = compose.services.worker!.environment!;
    expect(worker.KEEL_PAYMENTS_URL).toBe(
      `http://payments:${compose.services.payments!.environment!.KEEL_PAYMENTS_PORT}`,
    );
    expect(worker.KEEL_SMTP_URL).toMatch(/^smtp:\/\/mailpit:\d+$/);
    expect(compose.services.mailpit?.image).toMatch(/^axllent\/mailpit:v\d+\.\d+\.\d+$/);
  });

  it('gives the api a readiness check on /readyz and listens on all interfaces', () => {
    const api = compose.services.api!;
    expect(api.environment?.HOST).toBe('0.0.0.0');
    expect(api.healthcheck?.test.join(' ')).toContain('/readyz');
  });

  it('names only environment variables the shop reads', () => {
    const known = knownVariables;
    const source = shopSource;
    for (const name of ['api', 'relay', 'worker', 'payments']) {
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

interface KubernetesContainer {
  command: string[];
  envFrom?: { configMapRef: { name: string } }[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { containerPort: number }[];
  readinessProbe?: { httpGet: { path: string; port: number } };
  livenessProbe?: { httpGet: { path: string; port: number } };
}

interface KubernetesObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: {
    selector?: Record<string, string> | { matchLabels: Record<string, string> };
    ports?: { targetPort: number }[];
    template?: {
      metadata: { labels: Record<string, string> };
      spec: { terminationGracePeriodSeconds: number; containers: KubernetesContainer[] };
    };
  };
}

describe('deploy/kubernetes/shop.yaml', () => {
  const objects = parseAllDocuments(read('deploy/kubernetes/shop.yaml')).map(
    (doc) => doc.toJS() as KubernetesObject,
  );
  const config = objects.find((o) => o.kind === 'ConfigMap')!;
  const deployments = objects.filter((o) => o.kind === 'Deployment');

  it('runs the shop as api, worker and relay from entry points the build writes, against PostgreSQL', () => {
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual([
      'shop-api',
      'shop-payments',
      'shop-relay',
      'shop-worker',
    ]);
    expect(config.data?.KEEL_DB).toBe('pg');
    for (const deployment of deployments) {
      const [container] = deployment.spec!.template!.spec.containers;
      expectBuilt(container!.command.at(-1)!);
      expect(container!.envFrom?.[0]?.configMapRef.name).toBe(config.metadata.name);
      expect(container!.env?.some((v) => v.name === 'DATABASE_URL' && v.valueFrom !== undefined)).toBe(true);
    }
  });

  it('probes /readyz and /healthz on the port each process listens on, and drains before SIGKILL', () => {
    for (const deployment of deployments) {
      const spec = deployment.spec!.template!.spec;
      const container = spec.containers[0]!;
      const env = Object.fromEntries((container.env ?? []).map((v) => [v.name, v.value]));
      const port = Number(env.PORT ?? env.KEEL_METRICS_PORT ?? env.KEEL_PAYMENTS_PORT);
      expect(port, deployment.metadata.name).toBeGreaterThan(0);
      expect(container.ports?.map((p) => p.containerPort)).toEqual([port]);
      expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port });
      expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port });
      expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(Number(config.data?.KEEL_DRAIN_MS));
    }
    const service = objects.find((o) => o.kind === 'Service')!;
    expect(service.spec?.selector).toEqual({ app: 'shop', role: 'api' });
    expect(service.spec?.ports?.[0]?.targetPort).toBe(3000);
    // The workers charge the payment service by its Service's name and port.
    const payments = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'shop-payments')!;
    expect(payments.spec?.selector).toEqual({ app: 'shop', role: 'payments' });
    const worker = deployments.find((d) => d.metadata.name === 'shop-worker')!;
    const url = worker.spec!.template!.spec.containers[0]!.env!.find(
      (v) => v.name === 'KEEL_PAYMENTS_URL',
    )?.value;
    expect(url).toBe(`http://shop-payments:${payments.spec?.ports?.[0]?.targetPort}`);
  });

  it('names only environment variables the shop reads', () => {
    const names = [
      ...Object.keys(config.data ?? {}),
      ...deployments.flatMap((d) => (d.spec!.template!.spec.containers[0]!.env ?? []).map((v) => v.name)),
    ];
    for (const name of names) expect(knownVariables.has(name) && shopSource.includes(name), name).toBe(true);
  });
});
