import { InvalidArgumentError } from '../errors/index.ts';

/**
 * How many runs a property test makes: `base` (what the suite affords on every `npm test`)
 * times `KEEL_PROPERTY_SCALE`, so a soak run (`KEEL_PROPERTY_SCALE=20 npm test`) searches
 * twenty times further without editing each file. A scale below 1 shortens a run, never to
 * fewer than one case.
 */
export function propertyRuns(base: number, env: NodeJS.ProcessEnv = process.env): number {
  if (!Number.isInteger(base) || base < 1) throw new InvalidArgumentError('base', 'a positive integer', base);
  return Math.max(1, Math.round(base * propertyScale(env)));
}

function propertyScale(env: NodeJS.ProcessEnv): number {
  const text = env.KEEL_PROPERTY_SCALE?.trim();
  if (text === undefined || text === '') return 1;
  const scale = Number(text);
  if (!Number.isFinite(scale) || scale <= 0)
    throw new InvalidArgumentError('KEEL_PROPERTY_SCALE', 'a positive number', text);
  return scale;
}
