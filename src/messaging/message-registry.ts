import { InvalidArgumentError } from '../errors/index.ts';
import type { Envelope } from './envelope.ts';
import { UnknownMessageTypeError, type MessageType } from './message-type.ts';

/**
 * The message types a service knows. Consumers validate every envelope through it before a
 * handler sees it, so a handler only ever receives payloads that match their schema.
 */
export class MessageRegistry {
  readonly #types = new Map<string, MessageType>();

  constructor(types: readonly MessageType[] = []) {
    for (const type of types) this.register(type);
  }

  register(type: MessageType): this {
    if (this.#types.has(type.type))
      throw new InvalidArgumentError('type', `a type not yet registered`, type.type);
    this.#types.set(type.type, type);
    return this;
  }

  get(type: string): MessageType | undefined {
    return this.#types.get(type);
  }

  /** Validates `envelope` against its registered schema. Throws for an unknown or invalid message. */
  parse(envelope: Envelope): Envelope {
    const type = this.#types.get(envelope.type);
    if (type === undefined) throw new UnknownMessageTypeError(envelope.type);
    return type.parse(envelope);
  }

  get types(): readonly string[] {
    return [...this.#types.keys()];
  }
}
