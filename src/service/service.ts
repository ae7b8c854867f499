import { KeelError } from '../errors/index.ts';
import { systemClock, type Clock } from '../time/index.ts';
import { TypedEvents } from './typed-events.ts';

export type ServiceState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface StopOptions {
  /**
   * How long in-flight work may take to finish after the service stops taking new work.
   * When it passes, the drain signal aborts and what is still running is handed back
   * (redelivered later), never acknowledged. Default: 10 000 ms.
   */
  drainMs?: number;
}

export const defaultDrainMs = 10_000;

/** The lifecycle every long-running keel part shares: queue consumers, relays, servers. */
export interface Service extends AsyncDisposable {
  readonly name: string;
  readonly state: ServiceState;
  /** Starts the service; resolves when it is running. Calling it again while running is a no-op. */
  start(): Promise<void>;
  /**
   * Stops taking work, drains, and releases resources. Idempotent: every call returns the same
   * promise. Resolves even when in-flight work ignores its abort signal, once `drainMs` has passed.
   */
  stop(options?: StopOptions): Promise<void>;
}

export interface LifecycleEvents {
  state: { from: ServiceState; to: ServiceState };
  /** The drain deadline passed with work still running; that work was aborted. */
  'drain-timeout': { drainMs: number };
  /** A failure the service survived (a poll that threw, a lost connection) and will retry. */
  error: { error: unknown; during: string };
}

/**
 * Base for services: subclasses implement `onStart` and `onStop`; this class keeps the state
 * machine, makes `stop` idempotent and bounded by the drain deadline, and emits `state` events.
 */
export abstract class ServiceBase<E extends object = object> implements Service {
  readonly events = new TypedEvents<E & LifecycleEvents>();
  readonly name: string;
  protected readonly clock: Clock;
  #state: ServiceState = 'idle';
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  protected constructor(name: string, clock: Clock = systemClock) {
    this.name = name;
    this.clock = clock;
  }

  get state(): ServiceState {
    return this.#state;
  }

  /** Opens connections and begins taking work. A throw fails `start()` and leaves the service `failed`. */
  protected abstract onStart(): Promise<void>;

  /**
   * Stops taking new work, then waits for in-flight work. `drain` aborts when the drain
   * deadline passes: abort in-flight work then, and hand it back unacknowledged.
   */
  protected abstract onStop(drain: AbortSignal): Promise<void>;

  start(): Promise<void> {
    if (this.#state === 'running') return Promise.resolve();
    if (this.#state === 'starting' && this.#starting) return this.#starting;
    if (this.#state !== 'idle') {
      return Promise.reject(
        new KeelError('KEEL_SERVICE_STATE', `${this.name} cannot start: it is ${this.#state}`),
      );
    }
    this.#setState('starting');
    this.#starting = this.onStart().then(
      () => {
        // stop() may have been called while starting; it then waits on this promise.
        if (this.#state === 'starting') this.#setState('running');
      },
      (error: unknown) => {
        this.#setState('failed');
        throw new KeelError('KEEL_SERVICE_STATE', `${this.name} failed to start: ${String(error)}`, {
          cause: error,
        });
      },
    );
    return this.#starting;
  }

  stop(options: StopOptions = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.drainMs ?? defaultDrainMs);
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Throws unless the service is running: for public methods that need it. */
  protected assertRunning(action: string): void {
    if (this.#state !== 'running') {
      throw new KeelError('KEEL_SERVICE_STATE', `${this.name} cannot ${action}: it is ${this.#state}`);
    }
  }

  async #stop(drainMs: number): Promise<void> {
    if (this.#starting) await this.#starting.catch(() => undefined);
    if (this.#state === 'idle' || this.#state === 'failed') {
      this.#setState('stopped');
      return;
    }
    this.#setState('stopping');
    const drain = new AbortController();
    let expire: (() => void) | undefined;
    const expired = new Promise<'expired'>((resolve) => (expire = () => resolve('expired')));
    const timer = this.clock.setTimeout(() => {
      this.#emit('drain-timeout', { drainMs });
      drain.abort(new KeelError('KEEL_ABORTED', `${this.name}: drain deadline of ${drainMs} ms passed`));
      // One more turn for work that honours the abort to hand itself back, then stop resolves.
      setImmediate(() => expire?.());
    }, drainMs);
    const stopped = this.onStop(drain.signal).then(
      () => 'stopped' as const,
      (error: unknown) => {
        this.#emit('error', { error, during: 'stop' });
        return 'stopped' as const;
      },
    );
    try {
      // Work that ignores the abort must not hold stop() forever.
      await Promise.race([stopped, expired]);
    } finally {
      this.clock.clearTimeout(timer);
      this.#setState('stopped');
    }
  }

  #emit<K extends keyof LifecycleEvents>(name: K, payload: LifecycleEvents[K]): void {
    (this.events as unknown as TypedEvents<LifecycleEvents>).emit(name, payload);
  }

  #setState(to: ServiceState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    this.#emit('state', { from, to });
  }
}
