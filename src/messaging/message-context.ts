import type { DeliveryContext } from './handler.ts';

/**
 * What the handler is given for one message. Its `AbortController` is made only when the
 * handler reads `signal`: one per message cost several µs (with the garbage it leaves) in a
 * runtime whose own work per message is a few µs, and most handlers never look. An abort before
 * the first read is kept and handed over as an already-aborted signal.
 */
export class MessageContext implements DeliveryContext {
  readonly destination: string;
  readonly attempt: number;
  #controller: AbortController | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;

  constructor(destination: string, attempt: number) {
    this.destination = destination;
    this.attempt = attempt;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** True once the message was given up (drain deadline, lost lease), read or not. */
  get aborted(): boolean {
    return this.#aborted;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
