import { InvalidArgumentError } from '../../../errors/index.ts';

/** Dot-separated tokens of letters, digits, `_` and `-`: a NATS subject without wildcards. */
const destinationPattern = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
/** One subject token, and a valid stream and consumer name: no dots. */
const tokenPattern = /^[A-Za-z0-9_-]+$/;

/** Throws naming `field` unless `value` can be a destination: `orders`, `orders.dead-letter`. */
export function assertDestination(value: unknown, field = 'destination'): asserts value is string {
  if (typeof value !== 'string' || value.length > 200 || !destinationPattern.test(value)) {
    throw new InvalidArgumentError(
      field,
      'up to 200 characters: dot-separated tokens of letters, digits, _ and -',
      value,
    );
  }
}

/** Throws naming `field` unless `value` is one token (a group, a prefix). */
export function assertToken(value: unknown, field: string, pattern = tokenPattern): asserts value is string {
  if (typeof value !== 'string' || value.length > 64 || !pattern.test(value)) {
    throw new InvalidArgumentError(field, 'up to 64 letters, digits, _ or -', value);
  }
}

/**
 * Where a destination lives: one stream per destination, holding one subject.
 *
 * Stream names may not hold dots, so dots become `~` (which destinations may not hold); the
 * prefix may not hold `_`, so the first `_` ends it. Two destinations never share a stream.
 */
export class Names {
  readonly prefix: string;

  constructor(prefix: string) {
    assertToken(prefix, 'prefix', /^[A-Za-z0-9-]+$/);
    this.prefix = prefix;
  }

  stream(destination: string): string {
    return `${this.prefix}_${destination.replaceAll('.', '~')}`;
  }

  subject(destination: string): string {
    return `${this.prefix}.${destination}`;
  }

  /** Whether a stream was named by these names (for cleaning up a prefix's streams). */
  owns(stream: string): boolean {
    return stream.startsWith(`${this.prefix}_`);
  }
}
