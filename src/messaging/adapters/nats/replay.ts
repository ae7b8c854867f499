import { DeliverPolicy } from '@nats-io/jetstream';
import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Envelope } from '../../envelope.ts';
import { decode } from './codec.ts';
import type { JetStreamContext } from './jetstream-context.ts';

export interface ReplayOptions {
  /** Start at this stream sequence (inclusive). Give this or `fromTime`, or neither (from the start). */
  fromSequence?: number;
  /** Start at the first message stored at or after this instant (ms since the epoch, or a Date). */
  fromTime?: number | Date;
  /** Messages fetched per request. Default 500. */
  batchSize?: number;
}

/** One message read back by `replay`. */
export interface ReplayedMessage {
  /** Its stream sequence: pass `sequence + 1` as `fromSequence` to resume after it. */
  readonly sequence: number;
  /** When the stream stored it (ISO 8601, the server's clock). */
  readonly storedAt: string;
  readonly envelope: Envelope;
}

/** Validates at the call, then reads through an ordered consumer (ephemeral, unacknowledged). */
export function replayStream(
  context: JetStreamContext,
  destination: string,
  options: ReplayOptions,
): AsyncGenerator<ReplayedMessage> {
  const { fromSequence, fromTime } = options;
  const batchSize = options.batchSize ?? 500;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', 'an integer >= 1', batchSize);
  }
  if (fromSequence !== undefined && fromTime !== undefined) {
    throw new InvalidArgumentError('fromSequence', 'not both fromSequence and fromTime', options);
  }
  if (fromSequence !== undefined && (!Number.isInteger(fromSequence) || fromSequence < 1)) {
    throw new InvalidArgumentError('fromSequence', 'a stream sequence: an integer >= 1', fromSequence);
  }
  const time = fromTime instanceof Date ? fromTime.getTime() : fromTime;
  if (time !== undefined && (typeof time !== 'number' || !Number.isFinite(time))) {
    throw new InvalidArgumentError('fromTime', 'a Date or a time in ms since the epoch', fromTime);
  }
  const start =
    fromSequence !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSequence }
      : time !== undefined
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(time).toISOString() }
        : { deliver_policy: DeliverPolicy.All };
  return read(context, destination, start, batchSize);
}

async function* read(
  context: JetStreamContext,
  destination: string,
  start: object,
  batchSize: number,
): AsyncGenerator<ReplayedMessage> {
  const stream = await context.ensureStream(destination);
  const { js, jsm } = await context.handles();
  const { state } = await jsm.streams.info(stream);
  if (state.messages === 0) return;
  const consumer = await js.consumers.get(stream, start);
  try {
    for (;;) {
      let fetched = 0;
      let last = false;
      for await (const message of await consumer.fetch({ max_messages: batchSize, expires: 1000 })) {
        fetched++;
        // Stop at what was there when replay began: a busy stream would never end otherwise.
        last = message.info.pending === 0 || message.seq >= state.last_seq;
        let envelope: Envelope | undefined;
        try {
          envelope = decode(message).envelope;
        } catch {
          envelope = undefined;
        }
        if (envelope !== undefined) {
          yield {
            sequence: message.seq,
            storedAt: message.time.toISOString(),
            envelope,
          };
        }
        if (last) break;
      }
      if (last || fetched === 0) return;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}
