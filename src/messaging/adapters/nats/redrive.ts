import type { JsMsg } from '@nats-io/jetstream';
import type { Envelope } from '../../envelope.ts';
import { PublishError } from '../../publisher.ts';
import { decode, encode } from './codec.ts';
import type { JetStreamContext } from './jetstream-context.ts';
import { assertDestination } from './names.ts';

/** Every x-dead-letter-* header keel sets, stripped again on redrive. */
const deadLetterHeader = /^x-dead-letter-/;

/**
 * Takes the dead letters the group has not been given yet, a batch at a time, copies each to its
 * target (confirmed by the target's stream), then acks it. A crash in between duplicates, never
 * loses; the copy's id (`<id>:redrive:<stream>:<sequence>`) makes a second copy of the same dead
 * letter one JetStream drops within its duplicate window.
 */
export async function redriveDeadLetters(
  context: JetStreamContext,
  deadLetterDestination: string,
  options: { to: string | undefined; limit: number },
): Promise<number> {
  if (options.limit === 0) return 0;
  const consumer = await context.ensureConsumer(deadLetterDestination, context.o.group, context.o.leaseMs);
  const unmovable: JsMsg[] = [];
  let moved = 0;
  try {
    while (moved < options.limit) {
      const { num_pending: waiting } = await consumer.info();
      const want = Math.min(200, waiting, options.limit - moved);
      if (want <= 0) break;
      const batch: { message: JsMsg; target: string; envelope: Envelope }[] = [];
      let fetched = 0;
      for await (const message of await consumer.fetch({ max_messages: want, expires: 1000 })) {
        fetched++;
        const target = targetOf(message, options.to);
        if (target === undefined) unmovable.push(message);
        else batch.push({ message, ...target });
      }
      if (fetched === 0) break;
      const results = await Promise.allSettled(
        batch.map(async ({ message, target, envelope }) => {
          const copy = encode(envelope);
          await context.publish(target, copy, `${envelope.id}:redrive:${message.info.stream}:${message.seq}`);
          await context.settle(message, '+ACK');
        }),
      );
      const failed = results.flatMap((result, i) => (result.status === 'rejected' ? [batch[i]!] : []));
      moved += batch.length - failed.length;
      if (failed.length > 0) {
        const first = results.find((r) => r.status === 'rejected');
        throw new PublishError(
          failed[0]!.target,
          failed.map((f) => f.envelope.id),
          first?.status === 'rejected' ? first.reason : undefined,
        );
      }
    }
  } finally {
    // Not ours to move: back at once, for the operator's next look.
    await Promise.allSettled(unmovable.map((message) => context.settle(message, '-NAK')));
  }
  return moved;
}

function targetOf(
  message: JsMsg,
  to: string | undefined,
): { target: string; envelope: Envelope } | undefined {
  let envelope: Envelope;
  try {
    envelope = decode(message).envelope;
  } catch {
    return undefined;
  }
  const target = to ?? envelope.headers['x-dead-letter-source'];
  if (target === undefined) return undefined;
  try {
    assertDestination(target, 'x-dead-letter-source');
  } catch {
    return undefined;
  }
  const headers = Object.fromEntries(
    Object.entries(envelope.headers).filter(([name]) => !deadLetterHeader.test(name)),
  );
  return { target, envelope: { ...envelope, headers } };
}
