/**
 * What every policy hands to the function it runs: the signal to honour and the attempt
 * number. Contexts create their `AbortSignal` only when someone reads it, because an
 * `AbortController` per call costs more than all of a retry's own work; code that never looks
 * at the signal never pays for one.
 */
export interface ExecuteContext {
  /** Aborts when the caller gives up, a timeout fires, or a hedge won. Pass it on to I/O. */
  readonly signal: AbortSignal;
  /** 1 for the first attempt; counted by the innermost retry or hedge around the call. */
  readonly attempt: number;
}

/** The internal side of a context: policies ask these without creating a signal. */
export abstract class PolicyContext implements ExecuteContext {
  constructor(readonly attempt: number) {}
  abstract get signal(): AbortSignal;
  /** True once anything above this context aborted it. */
  abstract get aborted(): boolean;
  /** The reason it was aborted, when `aborted`. */
  abstract get reason(): unknown;
  /** A signal to listen on, or undefined when nothing can ever abort this context. */
  abstract abortSignal(): AbortSignal | undefined;
}

/** The context `execute` builds: aborts only through the caller's signal, if one was given. */
export class RootContext extends PolicyContext {
  #caller: AbortSignal | undefined;
  #idle: AbortSignal | undefined;
  constructor(caller: AbortSignal | undefined) {
    super(1);
    this.#caller = caller;
  }
  get signal(): AbortSignal {
    // A fresh never-aborting signal per call rather than a shared one: listeners that user
    // code forgets to remove must die with the call, not pile up on a module-wide signal.
    return this.#caller ?? (this.#idle ??= new AbortController().signal);
  }
  get aborted(): boolean {
    return this.#caller?.aborted === true;
  }
  get reason(): unknown {
    return this.#caller?.reason as unknown;
  }
  abortSignal(): AbortSignal | undefined {
    return this.#caller;
  }
}

/** The same cancellation as its parent, with its own attempt number (retry, hedge). */
export class AttemptContext extends PolicyContext {
  readonly #parent: PolicyContext;
  constructor(parent: PolicyContext, attempt: number) {
    super(attempt);
    this.#parent = parent;
  }
  get signal(): AbortSignal {
    return this.#parent.signal;
  }
  get aborted(): boolean {
    return this.#parent.aborted;
  }
  get reason(): unknown {
    return this.#parent.reason;
  }
  abortSignal(): AbortSignal | undefined {
    return this.#parent.abortSignal();
  }
}

/**
 * A context a policy can abort on its own (timeout, hedge) that also aborts with its parent.
 * The controller and the link to the parent exist only once the signal is read; `release()`
 * must be called when the work settles, so the parent does not keep a listener per call.
 */
export class OwnedContext extends PolicyContext {
  readonly #parent: PolicyContext;
  #controller: AbortController | undefined;
  #linked: AbortSignal | undefined;
  #aborted = false;
  #reason: unknown = undefined;

  constructor(parent: PolicyContext, attempt: number) {
    super(attempt);
    this.#parent = parent;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.reason);
      else {
        const upstream = this.#parent.abortSignal();
        if (upstream !== undefined) {
          upstream.addEventListener('abort', this);
          this.#linked = upstream;
        }
      }
    }
    return this.#controller.signal;
  }
  get aborted(): boolean {
    return this.#aborted || this.#parent.aborted;
  }
  get reason(): unknown {
    return this.#aborted ? this.#reason : this.#parent.reason;
  }
  abortSignal(): AbortSignal {
    return this.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /** The parent aborted (EventListener protocol: no closure per context). */
  handleEvent(): void {
    this.#controller?.abort(this.#parent.reason);
  }

  release(): void {
    this.#linked?.removeEventListener('abort', this);
    this.#linked = undefined;
  }
}
