import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  instrumentHttp,
  metricsRoute,
  setupObservability,
  type Observability,
} from '../../src/observability/index.ts';

const prometheusBin = process.env.KEEL_PROMETHEUS ?? '/usr/bin/prometheus';
const havePrometheus = existsSync(prometheusBin);

let otel: Observability;
beforeAll(() => {
  otel = setupObservability({ serviceName: 'scrape-test', prometheus: true });
});
afterAll(() => otel.shutdown());

/** A free TCP port on 127.0.0.1 (the OS picks it; the tiny race is acceptable in a test). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('a real Prometheus server', () => {
  // CI installs Debian's prometheus package (.ci/run); locally it may be absent.
  it.skipIf(!havePrometheus && process.env.CI !== 'true')(
    `scrapes /metrics and stores the histogram${havePrometheus ? '' : ' (skipped: prometheus not installed)'}`,
    async () => {
      const app = Fastify();
      instrumentHttp(app, { meter: otel.meterProvider.getMeter('keel') });
      metricsRoute(app, otel.prometheus!);
      app.get('/ping', async () => 'pong');
      await app.listen({ port: 0, host: '127.0.0.1' });
      const address = app.server.address();
      const appPort = typeof address === 'object' && address !== null ? address.port : 0;
      await app.inject({ url: '/ping' });
      const dir = await mkdtemp(join(tmpdir(), 'keel-prometheus-'));
      const promPort = await freePort();
      let server: ChildProcess | undefined;
      let log = '';
      try {
        await writeFile(
          join(dir, 'prometheus.yml'),
          `global: { scrape_interval: 1s, scrape_timeout: 1s }\n` +
            `scrape_configs:\n  - job_name: keel\n    static_configs: [{ targets: ['127.0.0.1:${appPort}'] }]\n`,
        );
        server = spawn(prometheusBin, [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${promPort}`,
        ]);
        server.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
        const query = `http_server_request_duration_count{http_route="/ping"}`;
        let result: { metric: Record<string, string>; value: [number, string] }[] = [];
        let health = '';
        for (let i = 0; i < 60 && result.length === 0; i++) {
          await pause(500);
          try {
            const targets = (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/targets`)).json()) as {
              data: { activeTargets: { health: string; lastError: string }[] };
            };
            const target = targets.data.activeTargets[0];
            health = `${target?.health ?? ''} ${target?.lastError ?? ''}`;
            const response = await fetch(
              `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(query)}`,
            );
            result = ((await response.json()) as { data: { result: typeof result } }).data.result;
          } catch {
            // Not listening yet.
          }
        }
        expect(result, `target: ${health}\n${log.slice(-2000)}`).toHaveLength(1);
        expect(result[0]!.metric.job).toBe('keel');
        expect(Number(result[0]!.value[1])).toBeGreaterThanOrEqual(1);
      } finally {
        server?.kill('SIGTERM');
        if (server !== undefined && server.exitCode === null)
          await new Promise((r) => server!.once('exit', r));
        await app.close();
        await rm(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
