// A call to a flaky dependency through keel/resilience: timeout per attempt, a circuit
// breaker, retry with backoff, and a fallback answer when everything gave up.
//
//   npx tsx examples/02-resilience/main.ts
//
// The dependency is simulated in-process (nothing on the network): it fails, then stalls,
// then recovers, so every policy gets to act. Timings come from the injected clock; the test
// beside this file runs it on a manual clock and checks the output.
import { pathToFileURL } from 'node:url';
import { circuitBreaker, fallback, pipeline, retry, timeout, type ExecuteContext } from 'keel/resilience';
import { exponentialBackoff, sleep, systemClock, type Clock } from 'keel/time';

export interface ExampleOptions {
  clock?: Clock;
  log?: (line: string) => void;
}

export async function runExample(options: ExampleOptions = {}): Promise<void> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? console.log;
  const start = clock.now();
  const at = (): string => `t=${String(clock.now() - start).padStart(4)}ms`;

  // The stock service: 2 × 503, then one call that hangs, then answers.
  let calls = 0;
  async function stockLevel(sku: string, { signal }: ExecuteContext): Promise<number> {
    calls++;
    if (calls <= 2) throw Object.assign(new Error('503 from inventory'), { status: 503 });
    if (calls === 3) await sleep(10_000, { clock, signal }); // honours the abort
    return 42;
  }

  // Outermost first: fallback ⟶ retry ⟶ breaker ⟶ timeout ⟶ the call.
  const breaker = circuitBreaker({ threshold: { kind: 'consecutive', failures: 3 }, openMs: 1000, clock });
  const policy = pipeline(
    fallback({ fallback: () => -1 }),
    retry({ maxAttempts: 6, backoff: exponentialBackoff({ initialMs: 100, jitter: 'none' }), clock }),
    breaker,
    timeout(300, { clock }),
  );
  const [fb, rt, , to] = policy.policies as [
    ReturnType<typeof fallback>,
    ReturnType<typeof retry>,
    unknown,
    ReturnType<typeof timeout>,
  ];
  rt.on('retry', (e) =>
    log(`${at()} retry   after attempt ${e.attempt}: ${(e.error as Error).message}; waiting ${e.delayMs} ms`),
  );
  rt.on('giveUp', (e) => log(`${at()} give up after ${e.attempts} attempts (${e.reason})`));
  to.on('timeout', (e) => log(`${at()} timeout after ${e.timeoutMs} ms: the call's signal is aborted`));
  breaker.on('break', (e) =>
    log(`${at()} breaker opens (${e.state.reason}) until t=${e.state.until - start}ms`),
  );
  breaker.on('halfOpen', () => log(`${at()} breaker half-open: one probe goes through`));
  breaker.on('reset', () => log(`${at()} breaker closes`));
  fb.on('fallback', () => log(`${at()} fallback answers`));

  const level = await policy.execute((context) => stockLevel('sku-1', context));
  log(`${at()} stock level of sku-1: ${level} (after ${calls} calls to inventory)`);

  // An operator takes inventory out of service: no retry can help, the fallback answers.
  breaker.isolate();
  log(`${at()} operator isolates the breaker`);
  const during = await policy.execute((context) => stockLevel('sku-1', context));
  log(`${at()} stock level of sku-1: ${during} (fallback; still ${calls} calls to inventory)`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runExample();
}
