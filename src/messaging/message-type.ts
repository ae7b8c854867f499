import type { z } from 'zod';
import { InvalidArgumentError, KeelError, type FieldIssue } from '../errors/index.ts';
import type { HybridLogicalClock } from '../ordering/index.ts';
import type { Clock } from '../time/index.ts';
import { createEnvelope, type Envelope, type Headers } from './envelope.ts';

/** A payload or envelope failed its schema; `issues` names every field. */
export class MessageInvalidError extends KeelError {
  readonly issues: readonly FieldIssue[];
  constructor(type: string, stage: 'publish' | 'consume', issues: readonly FieldIssue[]) {
    const summary = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    super('KEEL_MESSAGE_INVALID', `${type} is invalid at ${stage}: ${summary}`, { details: { type, stage } });
    this.issues = issues;
  }
}

export class UnknownMessageTypeError extends KeelError {
  constructor(type: string) {
    super('KEEL_UNKNOWN_MESSAGE_TYPE', `no schema is registered for message type ${type}`, {
      details: { type },
    });
  }
}

const namePattern = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

/**
 * A versioned message contract: `defineMessage('order.placed', 1, schema)` is the type
 * `order.placed.v1`. A breaking change is a new version and so a new type; consumers handle
 * both while producers move over.
 */
export interface MessageType<S extends z.ZodType = z.ZodType> {
  readonly name: string;
  readonly version: number;
  /** `name.vN`, the value of `Envelope.type`. */
  readonly type: string;
  readonly schema: S;
  /** Validates `payload` and wraps it in a new envelope. Throws `MessageInvalidError`. */
  create(
    payload: z.input<S>,
    options?: { key?: string | null; headers?: Headers; clock?: Clock; hlc?: HybridLogicalClock },
  ): Envelope<z.output<S>>;
  /** Validates an envelope received from a broker. Throws `MessageInvalidError`. */
  parse(envelope: Envelope): Envelope<z.output<S>>;
  is(envelope: Envelope): envelope is Envelope<z.output<S>>;
}

export function defineMessage<S extends z.ZodType>(name: string, version: number, schema: S): MessageType<S> {
  if (!namePattern.test(name)) {
    throw new InvalidArgumentError('name', 'a dotted lower-case name such as "order.placed"', name);
  }
  if (!Number.isInteger(version) || version < 1) {
    throw new InvalidArgumentError('version', 'an integer >= 1', version);
  }
  const type = `${name}.v${version}`;
  const validate = (payload: unknown, stage: 'publish' | 'consume'): z.output<S> => {
    const result = schema.safeParse(payload);
    if (!result.success) throw new MessageInvalidError(type, stage, zodIssues(result.error));
    return result.data;
  };
  return {
    name,
    version,
    type,
    schema,
    create(payload, options = {}) {
      const init = { type, payload: validate(payload, 'publish'), key: options.key ?? null };
      return createEnvelope(
        options.headers ? { ...init, headers: options.headers } : init,
        options.clock,
        options.hlc,
      );
    },
    parse(envelope) {
      if (envelope.type !== type) {
        throw new MessageInvalidError(type, 'consume', [
          { path: 'type', message: `expected ${type}, got ${envelope.type}` },
        ]);
      }
      return { ...envelope, payload: validate(envelope.payload, 'consume') };
    },
    is(envelope): envelope is Envelope<z.output<S>> {
      return envelope.type === type;
    },
  };
}

export function zodIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.flatMap((issue): FieldIssue[] => {
    const path = issue.path.map(String);
    // An unknown key is named by its own path, so the client sees which field to remove.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: [...path, key].join('.'), message: 'unknown field' }));
    }
    return [{ path: path.join('.'), message: issue.message }];
  });
}
