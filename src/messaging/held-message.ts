import type { Delivery } from './delivery-source.ts';
import type { Envelope } from './envelope.ts';
import type { MessageContext } from './message-context.ts';

/** Where a held message is: claimed ahead, being handled, handled (awaiting its ack), settling. */
export type Stage = 'buffered' | 'running' | 'handled' | 'settling';

/**
 * One message the consumer holds, from its claim until it is settled or its lease is lost.
 *
 * A class, not an object literal: V8 decides per literal site whether to allocate its objects
 * straight in the old generation, and a runtime that holds a whole claimed batch at every young
 * collection makes a literal site look long-lived. Once it is, every held message is allocated
 * old and, dead, keeps its envelope and payload alive through young collections until a full
 * one: measured over a synthetic source, several MB promoted per young collection and a fifth
 * of the CPU in GC. Constructor calls are not pretenured that way.
 */
export class HeldMessage<D extends Delivery> {
  readonly delivery: D;
  stage: Stage = 'buffered';
  /** When the lease runs out as far as this process knows (its clock): claim or renewal + lease. */
  until: number;
  /** The message the handler saw (parsed by the registry); set once handled. */
  message: Envelope | undefined = undefined;
  lost = false;
  /** The handler's context, from the moment the message is handed to the handler. */
  context: MessageContext | undefined = undefined;
  /** Holds a handler slot: being handled, or its failure being settled. */
  busy = false;

  constructor(delivery: D, until: number) {
    this.delivery = delivery;
    this.until = until;
  }
}
