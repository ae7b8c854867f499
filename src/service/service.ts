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
   * promise. Resolves even when in-flight work ignores its abort signal, once `drainMs` has passed
   * (and what a service waits for after its drain has ended, within a bound of its own: the WAL
   * outbox relay's slot release). `state` is 'stopping' until it resolves, 'stopped' then.
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
 * Whatever a stop waits for runs inside it, through the hooks below: the service is 'stopping'
 * until `stop()` resolves, and 'stopped' only then.
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

  /**
   * What a stop waits for after `onStop`, of a service that ran: once `onStop` ended, or once the
   * drain deadline passed without it. Not bounded by the drain deadline (its `drain-timeout` has
   * fired, or will not): bound it yourself. A throw is an `error` event (`during: 'stop'`), and
   * `stop()` resolves all the same. Default: nothing.
   */
  protected async afterDrain(): Promise<void> {}

  /**
   * Whether a service stopped without having run (never started, or its start failed) has work
   * in hand all the same, for `onStopUnstarted`: a one-shot call made without `start()`, say.
   * Asked once, by `stop()`. Default: none, and such a service goes straight to 'stopped'.
   */
  protected hasWorkInHand(): boolean {
    return false;
  }

  /**
   * `onStop` for a service that never ran but has work in hand (`hasWorkInHand`): it is
   * 'stopping' while this runs, and `drain` aborts at the same deadline, with the same
   * `drain-timeout` event; `afterDrain` does not follow. Default: nothing.
   */
  protected async onStopUnstarted(_drain: AbortSignal): Promise<void> {}

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
    const ran = this.#state !== 'idle' && this.#state !== 'failed';
    if (!ran && !this.hasWorkInHand()) {
      this.#setState('stopped');
      return;
    }
    this.#setState('stopping');
    try {
      await this.#drain(drainMs, (drain) => (ran ? this.onStop(drain) : this.onStopUnstarted(drain)));
      if (ran) await this.#afterDrain();
    } finally {
      this.#setState('stopped');
    }
  }

  async #afterDrain(): Promise<void> {
    try {
      await this.afterDrain();
    } catch (error) {
      this.#emit('error', { error, during: 'stop' });
    }
  }

  /** Runs `work` until it ends, or until one turn after `drain` aborted at the deadline. */
  async #drain(drainMs: number, work: (drain: AbortSignal) => Promise<void>): Promise<void> {
    const drain = new AbortController();
    let expire: (() => void) | undefined;
    const expired = new Promise<'expired'>((resolve) => (expire = () => resolve('expired')));
    const timer = this.clock.setTimeout(() => {
      this.#emit('drain-timeout', { drainMs });
      drain.abort(new KeelError('KEEL_ABORTED', `${this.name}: drain deadline of ${drainMs} ms passed`));
      // One more turn for work that honours the abort to hand itself back, then stop resolves.
      setImmediate(() => expire?.());
    }, drainMs);
    const drained = work(drain.signal).then(
      () => 'drained' as const,
      (error: unknown) => {
        this.#emit('error', { error, during: 'stop' });
        return 'drained' as const;
      },
    );
    try {
      // Work that ignores the abort must not hold stop() forever.
      await Promise.race([drained, expired]);
    } finally {
      this.clock.clearTimeout(timer);
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
