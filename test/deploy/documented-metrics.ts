// What deploy/'s Prometheus alerts and Grafana dashboard may read: the series keel documents.
import { readFileSync } from 'node:fs';

/**
 * The series names a scrape of a keel process can hold, from the Prometheus column of the
 * metrics table in docs/observability.md (whose first column a unit test keeps equal to the
 * code's metric names): a counter or gauge by its documented name (counters already end in
 * `_total`), a histogram by its `_bucket`, `_sum` and `_count` — never by its bare name, which
 * Prometheus holds no series of, so a query of it is always empty.
 */
export function documentedSeries(root: URL): Set<string> {
  const doc = readFileSync(new URL('docs/observability.md', root), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith('Metrics\n')) ?? '';
  const series = new Set<string>();
  for (const [, name, type] of section.matchAll(/^\| `[^`]+` +\| `([^`]+)` +\| (\w+) /gm)) {
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) series.add(name! + suffix);
    else series.add(name!);
  }
  return series;
}

const notMetrics = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'atan2',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects. What is not a name is cut out first: strings
 * (label values, regexes), label matchers, range and subquery durations, and label lists of
 * `by`/`without`/`on`/`ignoring`/`group_*`; of what is left, an identifier before `(` is a
 * function or an aggregation, and the operators' keywords are dropped.
 */
export function metricsReadBy(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ');
  return [...bare.matchAll(/(?<![\w:.])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()/g)]
    .map((match) => match[0])
    .filter((name) => !notMetrics.has(name.toLowerCase()));
}
