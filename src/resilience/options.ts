import { InvalidArgumentError } from '../errors/index.ts';

/** Boundary checks shared by every factory, so each bad option fails with its own name. */
export function requireInteger(field: string, value: unknown, min: number, allowInfinity = false): number {
  const ok =
    typeof value === 'number' &&
    ((Number.isInteger(value) && value >= min) || (allowInfinity && value === Infinity));
  if (!ok)
    throw new InvalidArgumentError(
      field,
      `an integer >= ${min}${allowInfinity ? ' or Infinity' : ''}`,
      value,
    );
  return value;
}

export function requireNumber(field: string, value: unknown, min: number, max = Infinity): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new InvalidArgumentError(field, `a finite number ${range}`, value);
  }
  return value;
}

export function requirePositive(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(field, 'a finite number > 0', value);
  }
  return value;
}

export function requireFunction<F>(field: string, value: F | undefined): F | undefined {
  if (value !== undefined && typeof value !== 'function')
    throw new InvalidArgumentError(field, 'a function', value);
  return value;
}

export function requireObject(field: string, value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(field, 'an options object', value);
  }
}
