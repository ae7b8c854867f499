import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('SystemClock', () => {
  it('keeps the process alive while a sleep is pending, as Node timers do', () => {
    const script = `
      import { sleep } from './src/time/index.ts';
      await sleep(5);
      console.log('after sleep');`;
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url),
      encoding: 'utf8',
    });
    expect(result.stdout.trim()).toBe('after sleep');
    expect(result.status).toBe(0);
  });
});
