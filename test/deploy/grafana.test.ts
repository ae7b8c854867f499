import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { breakerStateValue } from '../../src/observability/index.ts';
import { sagaStates } from '../../src/saga/index.ts';
import { documentedSeries, metricsReadBy } from './documented-metrics.ts';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');
const promtool = process.env.KEEL_PROMTOOL ?? '/usr/bin/promtool';
// CI installs Debian's prometheus package, promtool with it (.ci/run); locally it may be absent.
const skip = !existsSync(promtool) && process.env.CI !== 'true';
const missing = skip ? ' (skipped: promtool not installed)' : '';

interface DataSourceRef {
  type?: string;
  uid?: string;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: DataSourceRef;
  targets?: { refId: string; expr: string; datasource?: DataSourceRef }[];
  fieldConfig?: { defaults: { mappings?: { type: string; options: Record<string, { text: string }> }[] } };
  /** A collapsed row holds its panels here. */
  panels?: Panel[];
}

interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: DataSourceRef;
  current?: { value: string | string[] };
}

interface Dashboard {
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

interface ComposeService {
  image?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: string[] | Record<string, unknown>;
}

const dashboard = JSON.parse(read('deploy/grafana/dashboards/shop.json')) as Dashboard;
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const variables = dashboard.templating.list;
const queries = panels.flatMap((panel) =>
  (panel.targets ?? []).map((target) => ({ name: `${panel.title} (${target.refId})`, panel, ...target })),
);
/** The selector each `label_values(<selector>, <label>)` variable reads, as PromQL. */
const variableSelectors = variables
  .filter((v) => v.type === 'query')
  .map((v) => {
    const query = typeof v.query === 'string' ? v.query : v.query.query;
    const selector = /^label_values\((.+),\s*\w+\)$/.exec(query)?.[1];
    expect(selector, `variable ${v.name}: ${query}`).toBeDefined();
    return { name: `variable ${v.name}`, expr: selector! };
  });
const expressions = [...queries, ...variableSelectors];

const datasources = parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
  datasources: { uid: string; type: string; url: string; jsonData: { timeInterval: string } }[];
};
const [prometheus] = datasources.datasources;
const compose = parse(read('deploy/docker-compose.yml'), { merge: true }) as {
  services: Record<string, ComposeService>;
};
const grafana = compose.services.grafana;

/**
 * An expression as Grafana sends it: each variable replaced by a value it can take, the
 * intervals by durations. A variable not listed stays and fails the test that substitutes.
 */
function substitute(expr: string): string {
  const values: Record<string, string> = {
    job: 'shop-api',
    instance: 'api:3000',
    __rate_interval: '1m',
    __interval: '15s',
    __range: '1h',
  };
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (text, braced?: string, bare?: string) => {
    return values[(braced ?? bare)!] ?? text;
  });
}

describe('deploy/grafana', () => {
  it('provisions the compose Prometheus under a fixed uid, at the scrape interval of prometheus.yml', () => {
    expect(datasources.datasources).toHaveLength(1);
    expect(prometheus!.type).toBe('prometheus');
    expect(prometheus!.uid).toMatch(/^[\w-]{1,40}$/);
    const url = new URL(prometheus!.url);
    expect(compose.services[url.hostname]?.image).toMatch(/^prom\/prometheus:/);
    expect(compose.services[url.hostname]?.ports?.map((p) => p.split(':').at(-1))).toContain(url.port);
    const scrape = parse(read('deploy/prometheus/prometheus.yml')) as { global: { scrape_interval: string } };
    expect(prometheus!.jsonData.timeInterval).toBe(scrape.global.scrape_interval);
  });

  it('runs Grafana in the compose file: pinned, provisioning mounted read-only, after Prometheus, on a free port', () => {
    expect(grafana?.image).toMatch(/^grafana\/grafana:\d+\.\d+\.\d+$/);
    const mounts = new Map(
      (grafana?.volumes ?? [])
        .filter((volume) => volume.startsWith('./'))
        .map((volume) => {
          const [host, container, mode] = volume.split(':');
          expect(mode, volume).toBe('ro');
          expect(existsSync(new URL(`deploy/${host!.slice(2)}`, root)), host).toBe(true);
          return [container!, host!];
        }),
    );
    expect(mounts.get('/etc/grafana/provisioning')).toBe('./grafana/provisioning');
    // The file provider reads the folder the compose file mounts the dashboards at.
    const provider = parse(read('deploy/grafana/provisioning/dashboards/keel.yml')) as {
      providers: { type: string; options: { path: string } }[];
    };
    expect(provider.providers.map((p) => p.type)).toEqual(['file']);
    const dashboards = provider.providers[0]!.options.path;
    expect(mounts.get(dashboards)).toBe('./grafana/dashboards');
    expect(grafana?.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(`${dashboards}/shop.json`);
    const dependsOn = Array.isArray(grafana?.depends_on)
      ? grafana.depends_on
      : Object.keys(grafana?.depends_on ?? {});
    expect(dependsOn).toContain(new URL(prometheus!.url).hostname);
    const hostPorts = Object.entries(compose.services).flatMap(([name, service]) =>
      (service.ports ?? []).map((port) => ({ name, host: port.split(':')[0] })),
    );
    const [port] = hostPorts.filter((p) => p.name === 'grafana');
    expect(port?.host).toBeDefined();
    expect(hostPorts.filter((p) => p.host === port!.host).map((p) => p.name)).toEqual(['grafana']);
  });

  it('is a dashboard of the current schema whose panels have unique ids and fit the grid without overlapping', () => {
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const ids = panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { title, gridPos: g } of panels) {
      expect([g.x, g.y, g.w, g.h].every(Number.isInteger), title).toBe(true);
      expect(g.x >= 0 && g.y >= 0 && g.w > 0 && g.h > 0 && g.x + g.w <= 24, title).toBe(true);
    }
    const overlapping = panels.flatMap((a, i) =>
      panels
        .slice(i + 1)
        .filter(({ gridPos: b }) => {
          const { gridPos: p } = a;
          return p.x < b.x + b.w && b.x < p.x + p.w && p.y < b.y + b.h && b.y < p.y + p.h;
        })
        .map((b) => `${a.title} / ${b.title}`),
    );
    expect(overlapping).toEqual([]);
  });

  it('reads each panel from the provisioned Prometheus, by its uid or the datasource variable', () => {
    const datasource = variables.find((v) => v.type === 'datasource');
    expect(datasource?.query).toBe('prometheus');
    expect(datasource?.current?.value).toBe(prometheus!.uid);
    const allowed = [prometheus!.uid, `\${${datasource!.name}}`, `$${datasource!.name}`];
    const refs = [
      ...panels
        .filter((panel) => panel.type !== 'row')
        .map((panel) => [panel.title, panel.datasource] as const),
      ...queries.map((query) => [query.name, query.datasource ?? query.panel.datasource] as const),
      ...variables.filter((v) => v.type === 'query').map((v) => [v.name, v.datasource] as const),
    ];
    for (const [name, ref] of refs) {
      expect(ref?.type, name).toBe('prometheus');
      expect(allowed, name).toContain(ref?.uid);
    }
    expect(queries.length).toBeGreaterThan(30);
  });

  it.skipIf(skip)(
    `has only valid PromQL, by promtool, with the variables given values${missing}`,
    async () => {
      const rules = expressions.map((query, i) => ({
        record: `dashboard:query_${i}`,
        expr: substitute(query.expr),
      }));
      for (const [i, rule] of rules.entries()) expect(rule.expr, expressions[i]!.name).not.toContain('$');
      const dir = await mkdtemp(join(tmpdir(), 'keel-grafana-'));
      try {
        const file = join(dir, 'dashboard-queries.yml');
        await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules }] }));
        const { stdout } = await run(promtool, ['check', 'rules', file]).catch(
          (error: Error & { stderr?: string }) => {
            // promtool names the rule: say which panel's query that is.
            const named = (error.stderr || error.message).replace(
              /dashboard:query_(\d+)/g,
              (_, i: string) => expressions[Number(i)]!.name,
            );
            throw new Error(named);
          },
        );
        expect(stdout).toContain(`SUCCESS: ${rules.length} rules found`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it('reads only series keel documents, by their Prometheus names in docs/observability.md', () => {
    const documented = documentedSeries(root);
    expect(documented.size).toBeGreaterThan(20);
    const unknown = expressions.flatMap(({ name, expr }) =>
      metricsReadBy(expr)
        .filter((metric) => !documented.has(metric))
        .map((metric) => `${name}: ${metric}`),
    );
    expect(unknown).toEqual([]);
  });

  it('covers what an operator of the shop watches, each area in at least one panel', () => {
    // Each area: a series some query reads, and, where the series alone does not say it, the shape of that query.
    const areas: [area: string, series: string[], shape?: RegExp][] = [
      ['HTTP request rate by route', ['http_server_request_duration_count'], /by \([^)]*\bhttp_route\b/],
      ['HTTP 5xx errors', ['http_server_request_duration_count'], /http_response_status_code=~"5/],
      ...[0.5, 0.95, 0.99].map((q): [string, string[], RegExp] => [
        `HTTP latency p${q * 100} by route`,
        ['http_server_request_duration_bucket'],
        new RegExp(`histogram_quantile\\(${q},\\s*sum by \\([^)]*\\bhttp_route\\b`),
      ]),
      ['consumer handled', ['keel_consumer_handled_total']],
      ['consumer retried', ['keel_consumer_retried_total']],
      ['consumer dead-lettered', ['keel_consumer_dead_lettered_total']],
      ['queue depth', ['keel_queue_depth']],
      ['queue lag', ['keel_queue_lag']],
      ['outbox backlog', ['keel_outbox_backlog']],
      ['outbox parked', ['keel_outbox_parked']],
      ['outbox oldest unpublished age', ['keel_outbox_oldest_unpublished_age']],
      ['WAL outbox lag', ['keel_wal_outbox_lag']],
      ['breaker state', ['keel_breaker_state']],
      ['breaker transitions', ['keel_breaker_transitions_total']],
      ['policy retries', ['keel_policy_retries_total']],
      ['policy rejections', ['keel_policy_rejections_total']],
      ['policy timeouts', ['keel_policy_timeouts_total']],
      ['saga instances by state', ['keel_saga_instances'], /by \([^)]*\bkeel_saga_state\b/],
      ['saga step durations', ['keel_saga_step_duration_bucket'], /histogram_quantile/],
      ['event-loop delay', ['nodejs_eventloop_delay_p99', 'nodejs_eventloop_delay_max']],
      ['heap', ['v8js_memory_heap_used']],
    ];
    const uncovered = areas
      .filter(
        ([, series, shape]) =>
          !queries.some(
            ({ expr }) =>
              metricsReadBy(expr).some((metric) => series.includes(metric)) && (shape?.test(expr) ?? true),
          ),
      )
      .map(([area]) => area);
    expect(uncovered).toEqual([]);
  });

  it('names breaker and saga states as keel defines them', () => {
    const breaker = panels.find(
      (panel) =>
        panel.type === 'state-timeline' && panel.targets?.some((t) => /keel_breaker_state\b/.test(t.expr)),
    );
    const mapping = breaker?.fieldConfig?.defaults.mappings?.find((m) => m.type === 'value')?.options ?? {};
    expect(
      Object.fromEntries(Object.entries(mapping).map(([value, { text }]) => [text, Number(value)])),
    ).toEqual(breakerStateValue);
    const matched = queries.flatMap(({ expr }) =>
      [...expr.matchAll(/keel_saga_state=~?"([^"]+)"/g)].flatMap((m) => m[1]!.split('|')),
    );
    expect(matched.length).toBeGreaterThan(0);
    expect(matched.filter((state) => !(sagaStates as readonly string[]).includes(state))).toEqual([]);
  });
});
