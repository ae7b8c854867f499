import { InvalidArgumentError } from '../errors/index.ts';
import type { IsolationLevel } from './db.ts';

const levels: readonly IsolationLevel[] = ['read committed', 'repeatable read', 'serializable'];

/** Validates `options.isolation`; the result is safe to put into SQL text. */
export function checkIsolation(isolation: unknown): IsolationLevel | undefined {
  if (isolation === undefined) return undefined;
  if (typeof isolation === 'string' && (levels as readonly string[]).includes(isolation)) {
    return isolation as IsolationLevel;
  }
  throw new InvalidArgumentError('isolation', `one of ${levels.map((l) => `'${l}'`).join(', ')}`, isolation);
}
