import type { CircuitState } from './circuit-state.ts';

/** A breaker state as stored: `version` grows by one with every successful write. */
export interface StoredBreakerState {
  version: number;
  state: CircuitState;
}

export interface CompareAndSetResult {
  /** True when the write happened; false when the stored version was not the expected one. */
  saved: boolean;
  /** What the store holds after the call: the new record, or the one that won the race. */
  record: StoredBreakerState;
}

/**
 * Where breakers that share a dependency across processes keep their state. Breakers read it
 * in the background (at most once per `syncMs`) and write it on their own transitions, never
 * on the call path, so a slow or dead store cannot slow calls down: the breaker keeps
 * working on its local state and reports store errors through its `storeError` event.
 *
 * Implementations must be safe for concurrent use by many processes: `compareAndSet` is
 * atomic. `key` is the breaker's name; implementations add their own prefix.
 */
export interface BreakerStateStore {
  /** The stored record, or undefined when none was ever saved. */
  load(key: string): Promise<StoredBreakerState | undefined>;
  /**
   * Saves `state` as version `expectedVersion + 1` if the stored version is `expectedVersion`
   * (0 when nothing is stored yet).
   */
  compareAndSet(key: string, expectedVersion: number, state: CircuitState): Promise<CompareAndSetResult>;
  /** Forgets the key (tests, decommissioned breakers). */
  delete(key: string): Promise<void>;
}

/** The in-process store: for tests, and for breakers shared by several policies in one process. */
export class MemoryBreakerStateStore implements BreakerStateStore {
  readonly #records = new Map<string, string>();

  async load(key: string): Promise<StoredBreakerState | undefined> {
    const json = this.#records.get(key);
    // Copies in and out, as a real store does: a caller mutating a record changes nothing.
    return json === undefined ? undefined : (JSON.parse(json) as StoredBreakerState);
  }

  async compareAndSet(
    key: string,
    expectedVersion: number,
    state: CircuitState,
  ): Promise<CompareAndSetResult> {
    // No await before the write: the check and the set happen in one turn, atomically.
    const json = this.#records.get(key);
    const current = json === undefined ? undefined : (JSON.parse(json) as StoredBreakerState);
    const version = current?.version ?? 0;
    if (version !== expectedVersion) {
      return { saved: false, record: current ?? { version: 0, state: { status: 'closed', since: 0 } } };
    }
    const record: StoredBreakerState = { version: version + 1, state };
    this.#records.set(key, JSON.stringify(record));
    return { saved: true, record: JSON.parse(JSON.stringify(record)) as StoredBreakerState };
  }

  async delete(key: string): Promise<void> {
    this.#records.delete(key);
  }
}
