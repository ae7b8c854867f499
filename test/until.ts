/**
 * Polls `condition` every 20 ms on real time until it holds; fails naming `what` after
 * `timeoutMs`. For tests against real servers only: unit tests wait on a ManualClock.
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
