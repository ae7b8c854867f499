import { InvalidArgumentError } from '../errors/index.ts';
import type { MessageType } from '../messaging/message-type.ts';
import { escapePointerToken, zodJsonSchema } from './json-schema.ts';

/** One destination a service's messages travel through: a queue, a topic, a stream. */
export interface MessageChannelContract {
  /** The destination's name, as publishers and consumers spell it: `shop.orders`. */
  address: string;
  description: string;
  /** The versioned message types that travel on it (`defineMessage`). */
  messages: readonly MessageType[];
  /** What the service does on it: publishes (`send`), consumes (`receive`), or both. */
  actions: readonly ('send' | 'receive')[];
}

export interface AsyncApiDocumentOptions {
  info: { title: string; version: string; description?: string };
  /** By id: a short name for the channel, used in references (`orders`). */
  channels: Readonly<Record<string, MessageChannelContract>>;
}

/** The AsyncAPI 3.0 document `asyncApiDocument` writes: plain JSON, ready to commit. */
export interface AsyncApiDocument {
  asyncapi: '3.0.0';
  info: { title: string; version: string; description?: string };
  defaultContentType: 'application/json';
  channels: Record<string, unknown>;
  operations: Record<string, unknown>;
  components: { messages: Record<string, unknown>; messageTraits: Record<string, unknown> };
}

const idPattern = /^[A-Za-z0-9_-]+$/;

/**
 * Writes the AsyncAPI 3.0 document of a service's messages: each channel with the message types
 * on it, each message with its payload schema (the zod schema of its `defineMessage`, as the
 * JSON Schema it gives) and keel's envelope (id, type, key, headers, time) as a shared trait.
 * A message type is named by `name.vN`: a breaking change is a new version, so the document of
 * a published version changes only compatibly — commit it and compare it in a test, as with
 * `openApiDocument`.
 */
export function asyncApiDocument(options: AsyncApiDocumentOptions): AsyncApiDocument {
  const messages: Record<string, unknown> = {};
  const seen = new Map<string, MessageType>();
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  const addresses = new Set<string>();
  for (const [id, channel] of Object.entries(options.channels)) {
    if (!idPattern.test(id))
      throw new InvalidArgumentError('channels', 'ids of letters, digits, "_" or "-"', id);
    if (addresses.has(channel.address)) {
      throw new InvalidArgumentError('channels', 'one channel per address', channel.address);
    }
    addresses.add(channel.address);
    if (channel.messages.length === 0)
      throw new InvalidArgumentError(`channels.${id}.messages`, 'at least one', []);
    if (channel.actions.length === 0)
      throw new InvalidArgumentError(`channels.${id}.actions`, 'send, receive or both', []);
    for (const type of channel.messages) {
      const earlier = seen.get(type.type);
      if (earlier !== undefined && earlier !== type) {
        throw new InvalidArgumentError('messages', `one definition of ${type.type}`, 'two different ones');
      }
      seen.set(type.type, type);
      messages[type.type] ??= messageObject(type);
    }
    channels[id] = {
      address: channel.address,
      description: channel.description,
      messages: Object.fromEntries(
        channel.messages.map((type) => [type.type, { $ref: `#/components/messages/${type.type}` }]),
      ),
    };
    for (const action of channel.actions) {
      operations[`${action}-${id}`] = {
        action,
        channel: { $ref: `#/channels/${id}` },
        messages: channel.messages.map((type) => ({
          $ref: `#/channels/${id}/messages/${escapePointerToken(type.type)}`,
        })),
      };
    }
  }
  return {
    asyncapi: '3.0.0',
    info: { ...options.info },
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { messages, messageTraits: { keelEnvelope } },
  };
}

function messageObject(type: MessageType): Record<string, unknown> {
  return {
    name: type.type,
    title: `${type.name}, version ${type.version}`,
    contentType: 'application/json',
    // AsyncAPI's default schema format is a superset of JSON Schema draft 7.
    payload: zodJsonSchema(type.schema, 'output', 'draft-7'),
    traits: [{ $ref: '#/components/messageTraits/keelEnvelope' }],
  };
}

/** What every keel message carries around its payload, whatever the broker. */
const keelEnvelope = {
  summary: 'keel’s envelope',
  description:
    'Every message is a keel envelope: `id` (a UUIDv7, unique per message: consumers deduplicate on it), `type` (`name.vN`, this message’s name), `key` (the ordering key: messages of one key are handled in order, or null), `payload` (the schema below), `headers`, `occurredAt` (ISO 8601) and, where a hybrid logical clock stamped it, `hlc`. Each broker adapter maps it onto its own record (docs/messaging.md).',
  headers: {
    type: 'object',
    properties: {
      traceparent: { type: 'string', description: 'W3C trace context: the trace the message continues' },
      tracestate: { type: 'string' },
      'correlation-id': { type: 'string', description: 'The request or message that started the flow' },
      'causation-id': { type: 'string', description: 'The message that caused this one' },
    },
    additionalProperties: { type: 'string' },
  },
};
