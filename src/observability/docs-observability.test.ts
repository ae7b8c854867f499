import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { metricNames, spanNamePatterns, spanNames } from './names.ts';

const doc = await readFile(new URL('../../docs/observability.md', import.meta.url), 'utf8');

/** The backticked names in the first column of the table under `## <heading>`. */
function firstColumn(heading: string): string[] {
  const section = doc.split(/^## /m).find((s) => s.startsWith(`${heading}\n`)) ?? '';
  return section
    .split('\n')
    .filter((line) => /^\| `/.test(line))
    .map((line) => /^\| `([^`]+)`/.exec(line)![1]!);
}

describe('docs/observability.md', () => {
  it('lists exactly the span names the code makes', () => {
    const made = [
      spanNames.process('<destination>'),
      spanNames.publish('<destination>'),
      spanNames.outboxAdd,
      spanNames.httpRoute('<METHOD>', '<route>'),
      spanNames.sagaStep('<saga>', '<step>'),
      spanNames.sagaCompensation('<saga>', '<step>'),
    ];
    expect(made).toEqual([...spanNamePatterns]);
    expect(firstColumn('Spans').sort()).toEqual([...spanNamePatterns].sort());
  });

  it('lists exactly the metric names the code makes', () => {
    expect(firstColumn('Metrics').sort()).toEqual(Object.values(metricNames).sort());
  });
});
