import { Script } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { dashboardHtml } from './dashboard-page.ts';
import { dashboardScript } from './dashboard-script.ts';

// Where Chromium is missing the browser test skips: these catch the script's slips without it.
describe('the dashboard page', () => {
  it('has a script that parses', () => {
    // Compiled, not run: it needs a document.
    expect(() => new Script(dashboardScript, { filename: 'dashboard.js' })).not.toThrow();
  });

  it('has every element the script looks up by id', () => {
    const ids = new Set([...dashboardHtml.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]));
    const fixed = [...dashboardScript.matchAll(/getElementById\('([^']+)'\)/g)].map((m) => m[1]);
    const sagaStates = /\[('RUNNING'[^\]]*)\]/.exec(dashboardScript)![1]!.match(/[A-Z_]+/g)!;
    const looked = [
      ...fixed,
      ...sagaStates.map((state) => `sagas-${state}`),
      'queues',
      'outbox',
      'sagas',
      'breakers',
      'processes',
    ];
    expect(looked.length).toBeGreaterThan(10);
    expect(looked.filter((id) => !ids.has(id))).toEqual([]);
  });
});
