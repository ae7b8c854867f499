import { KeelError } from '../errors/index.ts';

export interface VersionConflict {
  /** The table, as the caller named it. */
  table: string;
  /** The row's id, as the caller passed it. */
  id: unknown;
  /** The version the caller read and expected to replace. */
  expected: number;
  /** The version the row has now: someone else changed it since the caller read it. */
  actual: number;
}

/**
 * A conditional write found another version than the one it expected: another writer changed the
 * row since it was read. Nothing was written. Read the row again and re-apply the change (that is
 * what `retryOnConflict` does), or report 409 to the client that sent the stale version.
 */
export class VersionConflictError extends KeelError {
  readonly table: string;
  readonly id: unknown;
  readonly expected: number;
  readonly actual: number;

  constructor(conflict: VersionConflict) {
    const id = describeId(conflict.id);
    super(
      'KEEL_VERSION_CONFLICT',
      `${conflict.table} ${id}: expected version ${conflict.expected}, found ${conflict.actual}; another writer changed it since it was read`,
      {
        details: {
          table: conflict.table,
          id,
          expectedVersion: conflict.expected,
          actualVersion: conflict.actual,
        },
      },
    );
    this.table = conflict.table;
    this.id = conflict.id;
    this.expected = conflict.expected;
    this.actual = conflict.actual;
  }
}

/** An id as messages show it. */
export function describeId(id: unknown): string {
  if (typeof id === 'string' || typeof id === 'number' || typeof id === 'bigint') return String(id);
  if (id instanceof Date) return id.toISOString();
  return JSON.stringify(id) ?? String(id);
}
