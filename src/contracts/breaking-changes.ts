import type { AsyncApiDocument } from './asyncapi-document.ts';
import type { JsonSchema, OpenApiDocument } from './openapi-document.ts';
import { unescapePointerToken } from './json-schema.ts';
import { schemaNarrowings, schemaWidenings } from './schema-widenings.ts';

// What a new version of a published contract breaks for those built against the old one. Run
// where the contract is published (the shop's `npm run contracts -- write` refuses a breaking
// change unless told it is meant), so a break is a decision, never an accident.

interface OperationObject {
  parameters?: { name: string; in: string; required?: boolean; schema?: JsonSchema }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<
    string,
    { headers?: Record<string, { required?: boolean }>; content?: Record<string, { schema: JsonSchema }> }
  >;
}

/**
 * HTTP: an operation removed; a parameter newly required, or accepting less than before; a
 * request body accepting less; a response (of a status both versions give) that may now carry
 * what the old document did not allow, or lacks a header the old one required, or changed its
 * content type. New operations, new optional inputs and fewer possible answers break nobody.
 */
export function openApiBreaks(previous: OpenApiDocument, next: OpenApiDocument): string[] {
  const before = inliner(previous);
  const after = inliner(next);
  const breaks: string[] = [];
  for (const [path, item] of Object.entries(previous.paths)) {
    for (const [method, old] of Object.entries(item) as [string, OperationObject][]) {
      const where = `${method.toUpperCase()} ${path}`;
      const now = next.paths[path]?.[method] as OperationObject | undefined;
      if (now === undefined) {
        breaks.push(`${where}: removed`);
        continue;
      }
      for (const parameter of now.parameters ?? []) {
        const was = (old.parameters ?? []).find((p) => p.name === parameter.name && p.in === parameter.in);
        const named = `${where}: ${parameter.in} parameter ${parameter.name}`;
        if (parameter.required === true && was?.required !== true) breaks.push(`${named} now required`);
        if (was?.schema !== undefined && parameter.schema !== undefined) {
          breaks.push(...prefixed(named, schemaNarrowings(before(was.schema), after(parameter.schema))));
        }
      }
      if (now.requestBody?.required === true && old.requestBody === undefined) {
        breaks.push(`${where}: a request body is now required`);
      }
      for (const [type, content] of Object.entries(old.requestBody?.content ?? {})) {
        const accepted = now.requestBody?.content[type];
        if (accepted === undefined) breaks.push(`${where}: request body ${type} no longer accepted`);
        else {
          breaks.push(
            ...prefixed(
              `${where}: request body`,
              schemaNarrowings(before(content.schema), after(accepted.schema)),
            ),
          );
        }
      }
      for (const [status, response] of Object.entries(old.responses)) {
        const given = now.responses[status];
        if (given === undefined) continue;
        const named = `${where} ${status}`;
        for (const [header, spec] of Object.entries(response.headers ?? {})) {
          if (spec.required === true && given.headers?.[header]?.required !== true) {
            breaks.push(`${named}: header ${header} no longer always sent`);
          }
        }
        for (const [type, content] of Object.entries(response.content ?? {})) {
          const sent = given.content?.[type];
          if (sent === undefined) breaks.push(`${named}: no longer answers ${type}`);
          else
            breaks.push(
              ...prefixed(`${named}: body`, schemaWidenings(before(content.schema), after(sent.schema))),
            );
        }
      }
    }
  }
  return breaks;
}

/**
 * Messages: a message type removed, or taken off a channel; a payload that may now carry what
 * the old schema did not allow (a consumer validating with it would refuse the message). A
 * change of that kind is a new version — `name.v2` beside `name.v1` — not an edit of `v1`.
 */
export function asyncApiBreaks(previous: AsyncApiDocument, next: AsyncApiDocument): string[] {
  const breaks: string[] = [];
  const oldMessages = previous.components.messages as Record<string, { payload: JsonSchema }>;
  const newMessages = next.components.messages as Record<string, { payload: JsonSchema }>;
  for (const [type, message] of Object.entries(oldMessages)) {
    const now = newMessages[type];
    if (now === undefined) breaks.push(`${type}: removed`);
    else breaks.push(...prefixed(`${type} payload`, schemaWidenings(message.payload, now.payload)));
  }
  const byAddress = (document: AsyncApiDocument) =>
    new Map(
      Object.values(
        document.channels as Record<string, { address: string; messages: Record<string, unknown> }>,
      ).map((channel) => [channel.address, channel]),
    );
  const nextChannels = byAddress(next);
  for (const [address, channel] of byAddress(previous)) {
    const now = nextChannels.get(address);
    if (now === undefined) {
      breaks.push(`channel ${address}: removed`);
      continue;
    }
    for (const type of Object.keys(channel.messages)) {
      if (!(type in now.messages)) breaks.push(`${type}: no longer on ${address}`);
    }
  }
  return breaks;
}

function prefixed(prefix: string, lines: string[]): string[] {
  return lines.map((line) => `${prefix} ${line}`);
}

/** Replaces each local `$ref` by what it points to, so two documents' schemas compare as values. */
function inliner(document: object): (schema: JsonSchema) => JsonSchema {
  const inline = (value: unknown, depth: number): unknown => {
    if (Array.isArray(value)) return value.map((item) => inline(item, depth));
    if (typeof value !== 'object' || value === null) return value;
    const ref = (value as JsonSchema).$ref;
    if (typeof ref === 'string' && ref.startsWith('#/') && depth < 32) {
      const target = ref
        .slice(2)
        .split('/')
        .map(unescapePointerToken)
        .reduce<unknown>((node, token) => (node as Record<string, unknown> | undefined)?.[token], document);
      if (target !== undefined) return inline(target, depth + 1);
    }
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, inline(item, depth)]));
  };
  return (schema) => inline(schema, 0) as JsonSchema;
}
