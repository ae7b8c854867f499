import { AbortedError } from '../errors/index.ts';

export type Listener<T> = (payload: T) => void;

/** A listener registration; dispose it (or `using` it) to stop listening. */
export interface ListenerHandle extends Disposable {
  dispose(): void;
}

/**
 * A small typed event emitter. Listeners run synchronously in registration order; one that
 * throws is reported as a process warning and never stops the emitter or the other listeners,
 * because an observer must not be able to break the work it observes.
 *
 * Tests await `once(name)` instead of sleeping.
 */
export class TypedEvents<E extends object> {
  #listeners = new Map<keyof E, Set<Listener<never>>>();

  on<K extends keyof E>(name: K, listener: Listener<E[K]>): ListenerHandle {
    let set = this.#listeners.get(name);
    if (set === undefined) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    const dispose = (): void => {
      set.delete(listener);
    };
    return { dispose, [Symbol.dispose]: dispose };
  }

  /**
   * Resolves with the next payload of `name` that passes `filter`. Rejects with `AbortedError`
   * if `signal` aborts first.
   */
  once<K extends keyof E>(
    name: K,
    options: { filter?: (payload: E[K]) => boolean; signal?: AbortSignal } = {},
  ): Promise<E[K]> {
    const { filter, signal } = options;
    if (signal?.aborted)
      return Promise.reject(new AbortedError(`waiting for ${String(name)}`, signal.reason));
    return new Promise<E[K]>((resolve, reject) => {
      const onAbort = (): void => {
        handle.dispose();
        reject(new AbortedError(`waiting for ${String(name)}`, signal?.reason));
      };
      const handle = this.on(name, (payload) => {
        if (filter && !filter(payload)) return;
        handle.dispose();
        signal?.removeEventListener('abort', onAbort);
        resolve(payload);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** True when at least one listener is registered for `name`: lets hot paths skip building payloads. */
  has(name: keyof E): boolean {
    return (this.#listeners.get(name)?.size ?? 0) > 0;
  }

  emit<K extends keyof E>(name: K, payload: E[K]): void {
    const set = this.#listeners.get(name);
    if (set === undefined || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<E[K]>)(payload);
      } catch (error) {
        process.emitWarning(
          `keel: a listener of "${String(name)}" threw: ${String(error)}`,
          'KeelListenerWarning',
        );
      }
    }
  }
}
