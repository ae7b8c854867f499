import type { Channel, Message } from 'amqplib';
import type { Confirmer } from './confirm-channel.ts';

/** Queue names behind a consumer group of a stream. */
export function groupQueueNames(stream: string, group: string): { lock: string; offsets: string } {
  return { lock: `${stream}.group.${group}.lock`, offsets: `${stream}.group.${group}.offsets` };
}

/**
 * A consumer group's committed offset, kept in a durable quorum queue of its own: each commit
 * publishes a record `{ "offset": n }` (confirmed) and then acks the records read before, so the
 * queue holds one record, or several after a crash between the two steps, of which the highest
 * counts. AMQP 0.9.1 has no server-side offset tracking for streams (that is the stream
 * protocol's), so keel keeps it here, where any client can read it.
 *
 * The records are read with `basic.get` and held unacknowledged on the group's channel: if the
 * process dies they return to the queue for the next holder of the group. That channel holds the
 * group's lock too, and is not the stream's: a record held there would stop the stream's acks
 * from going in runs. Records are acked through the channel's `ChannelAcks`, reported first.
 */
export class OffsetStore {
  readonly #confirmer: Confirmer;
  readonly #queue: string;
  #held: Message[] = [];
  #committed: number | undefined;

  constructor(confirmer: Confirmer, queue: string) {
    this.#confirmer = confirmer;
    this.#queue = queue;
  }

  /** The committed offset: the last offset handled (or given up) with everything before it. */
  get committed(): number | undefined {
    return this.#committed;
  }

  /** Reads every record; resolves with the highest committed offset, or undefined for a new group. */
  async load(): Promise<number | undefined> {
    const channel: Channel = this.#confirmer.channel;
    for (;;) {
      const message = await channel.get(this.#queue, { noAck: false });
      if (message === false) break;
      this.#confirmer.acks.delivered(message);
      this.#held.push(message);
      const offset = readOffset(message);
      if (offset !== undefined && (this.#committed === undefined || offset > this.#committed)) {
        this.#committed = offset;
      }
    }
    return this.#committed;
  }

  /** Records `offset` durably (after the confirm), then drops the older records. */
  async commit(offset: number): Promise<void> {
    if (this.#committed !== undefined && offset <= this.#committed) return;
    const content = Buffer.from(JSON.stringify({ offset }));
    const id = `offset-${offset}`;
    const failures = await this.#confirmer.publish(this.#queue, [
      { id, content, options: { persistent: true, mandatory: true, messageId: id } },
    ]);
    if (failures.length > 0) throw failures[0]!.error;
    this.#committed = offset;
    const old = this.#held.splice(0);
    // Only the group's holder reads this queue and it holds the old records, so the one ready
    // record is the new one: hold it, to drop it at the next commit.
    const fresh = await this.#confirmer.channel.get(this.#queue, { noAck: false });
    if (fresh !== false) {
      this.#confirmer.acks.delivered(fresh);
      this.#held.push(fresh);
    }
    // A crash before these acks leaves the old records beside the new one; the highest wins.
    for (const message of old) {
      if (this.#confirmer.open) this.#confirmer.acks.ack(message);
    }
  }
}

function readOffset(message: Message): number | undefined {
  try {
    const value = (JSON.parse(message.content.toString('utf8')) as { offset?: unknown }).offset;
    return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : undefined;
  } catch {
    return undefined;
  }
}
