import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { documentedSeries, metricsReadBy } from './documented-metrics.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const promtool = process.env.KEEL_PROMTOOL ?? '/usr/bin/promtool';
// CI installs Debian's prometheus package, promtool with it (.ci/run); locally it may be absent.
const skip = !existsSync(promtool) && process.env.CI !== 'true';
const missing = skip ? ' (skipped: promtool not installed)' : '';

describe('deploy/prometheus', () => {
  it.skipIf(skip)(`is a valid configuration whose alert rules load${missing}`, async () => {
    const { stdout } = await run(promtool, ['check', 'config', 'deploy/prometheus/prometheus.yml'], {
      cwd: root,
    });
    expect(stdout).toMatch(/SUCCESS: 8 rules found/);
  });

  it.skipIf(skip)(`fires each alert on its series, after its "for", and not before${missing}`, async () => {
    const { stdout } = await run(promtool, ['test', 'rules', 'alerts.test.yml'], {
      cwd: `${root}deploy/prometheus`,
    });
    expect(stdout).toMatch(/SUCCESS/);
  });

  it('alerts only on metrics keel exports, by their Prometheus names in docs/observability.md', () => {
    const rules = parse(readFileSync(`${root}deploy/prometheus/alerts.yml`, 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const documented = documentedSeries(new URL('../../', import.meta.url));
    expect(documented.size).toBeGreaterThan(10);
    const used = rules.groups.flatMap((group) => group.rules).flatMap((rule) => metricsReadBy(rule.expr));
    expect(used.length).toBeGreaterThanOrEqual(7);
    expect(used.filter((name) => !documented.has(name))).toEqual([]);
  });
});
