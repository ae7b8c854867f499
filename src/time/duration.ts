import { InvalidArgumentError } from '../errors/index.ts';

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration as people write it in a flag or an environment variable — `250ms`, `90s`, `30m`,
 * `12h`, `7d` — in ms. Anything else is an `InvalidArgumentError` naming `field`.
 */
export function parseDuration(text: string, field = 'duration'): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  const ms = match === null ? Number.NaN : Number(match[1]) * unitMs[match[2]!]!;
  if (!Number.isSafeInteger(ms))
    throw new InvalidArgumentError(field, 'a duration such as 250ms, 90s, 30m, 12h or 7d', text);
  return ms;
}
