import { context, SpanKind, trace, type Context, type Link, type Tracer } from '@opentelemetry/api';
import type { Queryable } from '../db/db.ts';
import type { Envelope, Publisher } from '../messaging/index.ts';
import { addToOutbox, type OutboxWriter } from '../outbox/index.ts';
import { messagingAttributes as m, spanNames } from './names.ts';
import { extractTraceContext } from './propagation.ts';
import { recordFailure } from './traced-handler.ts';
import { keelTracer } from './tracer.ts';

export interface TracedPublisherOptions {
  /** `messaging.system`. Default `keel`. */
  system?: string;
  /** Default: keel's tracer from the global provider. */
  tracer?: Tracer;
}

/**
 * Wraps a publisher: each `publish` call is a PRODUCER span `<destination> publish`.
 *
 * The span's parent is the active context, or, when nothing is active (the outbox relay polls
 * outside any request), the trace carried by the first message's headers: so the relay's
 * publish shows up in the trace of the request that wrote the outbox row. The envelopes are
 * passed on unchanged: their `traceparent` still names the span that created them, which is
 * the parent the consumer's span takes. Messages of a batch from other traces are links.
 */
export function tracedPublisher(publisher: Publisher, options: TracedPublisherOptions = {}): Publisher {
  const tracer = options.tracer ?? keelTracer();
  const system = options.system ?? 'keel';
  return {
    async publish(destination: string, messages: readonly Envelope[]): Promise<void> {
      const parent = parentFor(messages);
      const span = tracer.startSpan(
        spanNames.publish(destination),
        {
          kind: SpanKind.PRODUCER,
          links: linksFor(messages, parent),
          attributes: {
            [m.system]: system,
            [m.destinationName]: destination,
            [m.operationType]: 'send',
            [m.batchMessageCount]: messages.length,
            ...(messages.length === 1 ? { [m.messageId]: messages[0]!.id } : {}),
          },
        },
        parent,
      );
      try {
        await context.with(trace.setSpan(parent, span), () => publisher.publish(destination, messages));
      } catch (error) {
        recordFailure(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  };
}

/** At most this many links per publish span: the SDK's default link limit. */
const maxLinks = 128;

/**
 * A batch can hold messages from several traces (a relay round): the span links to each
 * message's creating span other than its parent, as the messaging conventions advise.
 */
function linksFor(messages: readonly Envelope[], parent: Context): Link[] | undefined {
  if (messages.length < 2) return undefined;
  const parentSpan = trace.getSpanContext(parent)?.spanId;
  const seen = new Set<string>();
  const links: Link[] = [];
  for (const message of messages) {
    if (links.length >= maxLinks) break;
    if (message.headers.traceparent === undefined) continue;
    const span = trace.getSpanContext(extractTraceContext(message, context.active()));
    if (span === undefined || span.spanId === parentSpan || seen.has(span.spanId)) continue;
    seen.add(span.spanId);
    links.push({ context: span });
  }
  return links.length === 0 ? undefined : links;
}

function parentFor(messages: readonly Envelope[]): Context {
  const active = context.active();
  if (trace.getSpanContext(active) !== undefined || messages.length === 0) return active;
  return extractTraceContext(messages[0]!, active);
}

/**
 * `addToOutbox` inside an INTERNAL span `outbox.add`, a child of the active span (the HTTP route
 * that writes the order). Same arguments, same transaction, same guarantee. `add` writes through
 * another `OutboxWriter` (`addToWalOutbox`) in the same span.
 */
export async function tracedAddToOutbox(
  tx: Queryable,
  destination: string,
  messages: Envelope | readonly Envelope[],
  options: { tracer?: Tracer; add?: OutboxWriter } = {},
): Promise<void> {
  const add = options.add ?? addToOutbox;
  const tracer = options.tracer ?? keelTracer();
  const count = Array.isArray(messages) ? messages.length : 1;
  await tracer.startActiveSpan(
    spanNames.outboxAdd,
    { attributes: { [m.destinationName]: destination, [m.batchMessageCount]: count } },
    async (span) => {
      try {
        await add(tx, destination, messages);
      } catch (error) {
        recordFailure(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}
