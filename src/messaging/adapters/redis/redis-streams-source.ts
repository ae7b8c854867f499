import type { Redis } from 'ioredis';
import { v7 as uuidv7 } from 'uuid';
import { systemClock, type Clock } from '../../../time/index.ts';
import type { Delivery, DeliverySource } from '../../delivery-source.ts';
import type { Envelope } from '../../envelope.ts';
import { AckBatcher } from './ack-batcher.ts';
import { fencedAck } from './fenced-ack.ts';
import {
  ackKeyedScript,
  claimScript,
  deadLetterScript,
  extendScript,
  forgetConsumerScript,
  releaseScript,
  retryScript,
} from './scripts.ts';
import { sendNow } from './send-now.ts';
import { deadLetterEnvelope } from '../../dead-letter-envelope.ts';
import { decodeEntry, encodeEntry, fieldMap, type StreamEntry } from './stream-entry.ts';
import type { StreamKeys } from './stream-keys.ts';
import type { WakeSubscriber } from './wake-subscriber.ts';

/** A claimed stream entry. */
export interface RedisStreamDelivery extends Delivery {
  /** The entry id, `1764300000000-0`. */
  readonly entryId: string;
  /** Read from the group's retry stream rather than the destination's stream. */
  readonly fromRetry: boolean;
  /** Redis's delivery count of this entry in the group: 1 on first read, +1 per takeover. */
  readonly deliveryCount: number;
  readonly firstFailedAt: string | undefined;
}

export interface RedisStreamsSourceConfig {
  client: Redis;
  destination: string;
  keys: StreamKeys;
  deadLetter: { destination: string; keys: StreamKeys };
  group: string;
  consumer: string;
  leaseMs: number;
  groupStart: '0' | '$';
  /** XADD trimming for entries moved into the destination's stream: `['', '']` for none. */
  trim: () => readonly [kind: '' | 'MAXLEN' | 'MINID', threshold: string];
  clock: Clock;
  subscriber: WakeSubscriber | undefined;
  /** Entries moved from the delayed sets per claim, at most. */
  promoteLimit: number;
  /** Shared by the broker's sources of the destination; its delayed publishes lower it. */
  due: DelayedDue;
  /** Per-key ordering: one message per key at a time, in stream order, across retries. */
  perKey: boolean;
}

/** The earliest due time (broker clock) in a destination's delayed set, as far as this process knows. */
export interface DelayedDue {
  nextDelayed: number;
  /** Raised on every change from a publish, so a claim's stale answer does not overwrite it. */
  version: number;
}

/**
 * A class rather than an object literal: a consumer holds a whole claimed batch at every young
 * GC, and V8 then pretenures a literal's site; see `HeldMessage` in the consumer runtime.
 */
class StreamDelivery implements RedisStreamDelivery {
  readonly envelope: Envelope;
  readonly attempt: number;
  readonly entryId: string;
  readonly fromRetry: boolean;
  readonly deliveryCount: number;
  readonly firstFailedAt: string | undefined;

  constructor(entry: StreamEntry, entryId: string, fromRetry: boolean, deliveryCount: number) {
    this.envelope = entry.envelope;
    this.attempt = entry.priorAttempts + deliveryCount;
    this.entryId = entryId;
    this.fromRetry = fromRetry;
    this.deliveryCount = deliveryCount;
    this.firstFailedAt = entry.firstFailedAt;
  }
}

type ClaimedEntry = [which: 'm' | 'r', id: string, deliveryCount: number, fields: string[]];
/** An XREADGROUP reply's entry: id and flat fields. */
type ReadEntry = [id: string, fields: string[]];

/**
 * One consumer in a Redis consumer group: the Redis Streams side of the consumer runtime.
 *
 * - `claim`: mostly one XREADGROUP; now and then (see `#claim`) one Lua script that also moves
 *   due delayed messages and retries into their streams and takes over entries whose lease ran
 *   out (XPENDING IDLE + XCLAIM). One round trip either way; never a blocking read.
 * - `ack`: one script per batch (the runtime's, or acks made in one go) that XACKs the entries this consumer still
 *   holds (see below) and reports the others. Entries of the destination's stream stay (replay,
 *   other groups; trim them with `retention`); retry copies are deleted as well.
 * - `retry`: the copy goes to a per-group sorted set, scored by when it is due, and the entry is
 *   acknowledged, in one script. Per group, so another group never sees this group's retries.
 * - `deadLetter`: XADD to the dead-letter stream with the `x-dead-letter-*` headers, then XACK.
 * - `release`: the entry stays pending with its delivery count put back and an idle time beyond
 *   any lease, so the next claim in the group takes it at once without counting an attempt.
 *
 * - `extend`: the runtime's heartbeat; XCLAIM ... JUSTID to itself resets each held entry's idle
 *   time without counting a delivery, so a slow handler's entry is not taken over.
 *
 * Claims and acks are batches already: they go out at once (`sendNow`), not through the client's
 * auto-pipelining, which would hold each for a turn of the event loop.
 *
 * Every settle, acks included, checks first that this consumer still holds the entry with the
 * delivery count it claimed (the lease token); if its lease ran out and another consumer took it,
 * the settle does nothing (an ack reports it refused).
 */
export class RedisStreamsSource implements DeliverySource<RedisStreamDelivery> {
  readonly destination: string;
  readonly leaseMs: number;
  readonly #c: RedisStreamsSourceConfig;
  readonly #retryStream: string;
  readonly #retryDelayed: string;
  readonly #fullEveryMs: number;
  readonly #keyLocks: string;
  readonly #keyWaiting: string;
  /** Prefix of the group's taken sets, and this consumer's (see `ackScript`). */
  readonly #takenPrefix: string;
  readonly #taken: string;
  #unsubscribe: (() => Promise<void>) | undefined;
  #lastFull = Number.NEGATIVE_INFINITY;
  #fullNext = true;
  /** Earliest due time (source clock) of this group's waiting retries, as far as this source knows. */
  #nextRetry = Number.POSITIVE_INFINITY;
  #retryVersion = 0;
  readonly #acks = new AckBatcher<RedisStreamDelivery>((deliveries) =>
    fencedAck(
      this.#c.client,
      [this.#c.keys.stream, this.#retryStream, this.#taken],
      this.#c.group,
      this.#c.consumer,
      deliveries,
    ),
  );

  constructor(config: RedisStreamsSourceConfig) {
    this.destination = config.destination;
    this.leaseMs = config.leaseMs;
    this.#c = config;
    this.#retryStream = config.keys.retry(config.group);
    this.#retryDelayed = config.keys.retryDelayed(config.group);
    this.#keyLocks = config.keys.keyLocks(config.group);
    this.#keyWaiting = config.keys.keyWaiting(config.group);
    this.#takenPrefix = config.keys.taken(config.group);
    this.#taken = this.#takenPrefix + config.consumer;
    this.#fullEveryMs = Math.min(250, Math.max(1, Math.floor(config.leaseMs / 2)));
  }

  /** The consumer name in the group, as `XINFO CONSUMERS` shows it. */
  get consumer(): string {
    return this.#c.consumer;
  }

  async open(wake: () => void): Promise<void> {
    await this.#ensureGroups();
    if (this.#c.subscriber !== undefined) {
      this.#unsubscribe = await this.#c.subscriber.subscribe(this.#c.keys.channel, (signal) => {
        // A released entry, or a connection back after a cut: look for entries to take over now
        // rather than at the next scan.
        if (signal !== '') this.#fullNext = true;
        wake();
      });
    }
  }

  async claim(max: number): Promise<RedisStreamDelivery[]> {
    let claimed: ClaimedEntry[] | ReadEntry[];
    try {
      claimed = await this.#claim(max);
    } catch (error) {
      // The group is gone: the stream was deleted, or a server without persistence restarted.
      if (!(error instanceof Error) || !error.message.includes('NOGROUP')) throw error;
      await this.#ensureGroups();
      claimed = await this.#claim(max);
    }
    const deliveries: RedisStreamDelivery[] = [];
    let foreign: ClaimedEntry[] | undefined;
    for (const entry of claimed) {
      // Read entries ([id, fields]) are the common case: first deliveries from the stream.
      const read = entry.length === 2;
      const which = read ? 'm' : entry[0];
      const entryId = read ? entry[0] : entry[1];
      const deliveryCount = read ? 1 : entry[2];
      const fields = read ? entry[1] : entry[3];
      const decoded = decodeEntry(fields);
      if (decoded === undefined) {
        (foreign ??= []).push([which, entryId, deliveryCount, fields]);
        continue;
      }
      deliveries.push(new StreamDelivery(decoded, entryId, which === 'r', deliveryCount));
    }
    for (const [which, entryId, deliveryCount, fields] of foreign ?? []) {
      // If parking fails the entry stays pending and comes back after its lease; the rest of
      // the batch must still reach the runtime rather than wait out their leases too.
      await this.#parkForeign(entryId, which === 'r', deliveryCount, fields).catch(() => undefined);
    }
    return deliveries;
  }

  /**
   * Acknowledges in batches: acks made in one go (see `AckBatcher`) go out as one script, at once;
   * each call resolves when its batch is acknowledged, with those of its deliveries this
   * consumer no longer held (their lease ran out and another consumer took them): not acknowledged.
   */
  ack(deliveries: readonly RedisStreamDelivery[]): Promise<readonly RedisStreamDelivery[]> {
    if (this.#c.perKey && deliveries.some((d) => d.envelope.key !== null)) return this.#ackKeyed(deliveries);
    return this.#acks.add(deliveries);
  }

  /** Per-key ordering: acknowledging a key's holder hands the key to its next waiting entry. */
  async #ackKeyed(deliveries: readonly RedisStreamDelivery[]): Promise<RedisStreamDelivery[]> {
    const args: (string | number)[] = [this.#c.group, this.#c.consumer, this.#keyWaiting];
    for (const d of deliveries) {
      args.push(d.fromRetry ? 'r' : 'm', d.entryId, d.deliveryCount, d.envelope.key ?? '', d.envelope.id);
    }
    const [handed, refused] = (await ackKeyedScript.run(
      this.#c.client,
      [this.#c.keys.stream, this.#retryStream, this.#keyLocks],
      args,
      true,
    )) as [number, number[] | null];
    if (handed !== 0) this.#fullNext = true;
    return (refused ?? []).map((i) => deliveries[i]!);
  }

  async retry(delivery: RedisStreamDelivery, delayMs: number, _error: unknown): Promise<boolean> {
    const now = this.#c.clock.now();
    const copy = encodeEntry(delivery.envelope, {
      priorAttempts: delivery.attempt,
      firstFailedAt: delivery.firstFailedAt ?? new Date(now).toISOString(),
      retryOf: delivery.entryId,
    });
    const due = now + Math.max(0, delayMs);
    const held = await retryScript.run(
      this.#c.client,
      [this.#streamOf(delivery), this.#retryDelayed],
      [
        this.#c.group,
        this.#c.consumer,
        delivery.entryId,
        delivery.deliveryCount,
        due,
        JSON.stringify(copy),
        delivery.fromRetry ? '1' : '0',
      ],
    );
    if (Number(held) === 0) return false;
    this.#retryVersion++;
    this.#nextRetry = Math.min(this.#nextRetry, due);
    return true;
  }

  async deadLetter(delivery: RedisStreamDelivery, error: unknown): Promise<boolean> {
    const now = new Date(this.#c.clock.now()).toISOString();
    const envelope = deadLetterEnvelope(delivery, this.destination, error, now);
    const handed = await this.#moveToDeadLetter(
      delivery.entryId,
      delivery.fromRetry,
      delivery.deliveryCount,
      envelope,
      this.#c.perKey ? (delivery.envelope.key ?? '') : '',
      delivery.envelope.id,
    );
    if (handed > 1) this.#fullNext = true;
    return handed > 0;
  }

  async release(delivery: RedisStreamDelivery): Promise<boolean> {
    const held = await releaseScript.run(
      this.#c.client,
      [this.#streamOf(delivery)],
      [this.#c.group, this.#c.consumer, delivery.entryId, delivery.deliveryCount, this.#c.keys.channel],
    );
    return Number(held) !== 0;
  }

  /** Resets the idle time of the entries this consumer still holds; resolves with the others. */
  async extend(deliveries: readonly RedisStreamDelivery[]): Promise<RedisStreamDelivery[]> {
    if (deliveries.length === 0) return [];
    const args: (string | number)[] = [this.#c.group, this.#c.consumer];
    for (const d of deliveries) args.push(d.fromRetry ? 'r' : 'm', d.entryId, d.deliveryCount);
    const keys = [this.#c.keys.stream, this.#retryStream, this.#taken];
    const lost = (await extendScript.run(this.#c.client, keys, args)) as number[] | null;
    return (lost ?? []).map((i) => deliveries[i]!);
  }

  /**
   * Stops the wake-ups and removes this consumer's name from the group when it holds nothing (and
   * any other consumer name idle for 10 leases that holds nothing). A consumer that still holds
   * entries keeps its name: they go to the others when their lease runs out.
   */
  async close(): Promise<void> {
    const unsubscribe = this.#unsubscribe;
    this.#unsubscribe = undefined;
    await unsubscribe?.();
    // Housekeeping only: never hold a stop up waiting for a server that is away.
    if (this.#c.client.status !== 'ready') return;
    try {
      await forgetConsumerScript.run(
        this.#c.client,
        [this.#c.keys.stream, this.#retryStream],
        [this.#c.group, this.#c.consumer, Math.max(60_000, this.#c.leaseMs * 10), this.#takenPrefix],
      );
    } catch {
      // A name left behind costs a few bytes and holds no message; the next close removes it.
    }
  }

  /**
   * Most claims are one plain XREADGROUP. The full claim script (due delayed messages and retries
   * moved into their streams, expired leases taken over, the retry stream read) runs when it can
   * find something: right after a release, a reconnect or a claim that found retries; when a
   * known due time is reached on the source's clock; and at least every min(250 ms, leaseMs / 2)
   * of real time (the server's idle times are real time), for what other processes scheduled.
   */
  async #claim(max: number): Promise<ClaimedEntry[] | ReadEntry[]> {
    const realNow = systemClock.now();
    const due = Math.min(this.#c.due.nextDelayed, this.#nextRetry);
    const quiet =
      !this.#fullNext && realNow - this.#lastFull < this.#fullEveryMs && this.#c.clock.now() < due;
    // Per-key ordering checks every entry's key against the locks: always the script.
    if (quiet && !this.#c.perKey) {
      const reply = (await sendNow(this.#c.client, 'xreadgroup', [
        'GROUP',
        this.#c.group,
        this.#c.consumer,
        'COUNT',
        max,
        'STREAMS',
        this.#c.keys.stream,
        '>',
      ])) as [string, ReadEntry[]][] | null;
      return reply?.[0]?.[1] ?? [];
    }
    this.#lastFull = realNow;
    this.#fullNext = false;
    const delayedVersion = this.#c.due.version;
    const retryVersion = this.#retryVersion;
    const [kind, threshold] = this.#c.trim();
    const [entries, nextDelayed, nextRetry, more] = (await claimScript.run(
      this.#c.client,
      [this.#c.keys.stream, this.#retryStream, this.#c.keys.delayed, this.#retryDelayed, this.#keyLocks],
      [
        this.#c.group,
        this.#c.consumer,
        max,
        this.#c.leaseMs,
        this.#c.clock.now(),
        this.#c.promoteLimit,
        kind,
        threshold,
        '1',
        this.#c.perKey ? '1' : '0',
        this.#keyWaiting,
        this.#takenPrefix,
      ],
      true,
    )) as [ClaimedEntry[], string, string, number];
    // A due time noted while the script ran may be missing from its answer: keep the earlier.
    const seenDelayed = nextDelayed === '' ? Number.POSITIVE_INFINITY : Number(nextDelayed);
    const seenRetry = nextRetry === '' ? Number.POSITIVE_INFINITY : Number(nextRetry);
    this.#c.due.nextDelayed =
      this.#c.due.version === delayedVersion ? seenDelayed : Math.min(seenDelayed, this.#c.due.nextDelayed);
    this.#nextRetry = this.#retryVersion === retryVersion ? seenRetry : Math.min(seenRetry, this.#nextRetry);
    if (more === 1) this.#fullNext = true;
    return entries;
  }

  async #ensureGroups(): Promise<void> {
    const { client, keys, group, groupStart } = this.#c;
    const pipeline = client.pipeline();
    pipeline.xgroup('CREATE', keys.stream, group, groupStart, 'MKSTREAM');
    pipeline.xgroup('CREATE', this.#retryStream, group, '0', 'MKSTREAM');
    for (const [error] of (await pipeline.exec()) ?? []) {
      if (error && !error.message.includes('BUSYGROUP')) throw error;
    }
  }

  #streamOf(delivery: RedisStreamDelivery): string {
    return delivery.fromRetry ? this.#retryStream : this.#c.keys.stream;
  }

  async #moveToDeadLetter(
    entryId: string,
    fromRetry: boolean,
    deliveryCount: number,
    envelope: Envelope,
    key: string,
    messageId: string,
  ): Promise<number> {
    const { keys } = this.#c.deadLetter;
    const done = await deadLetterScript.run(
      this.#c.client,
      [fromRetry ? this.#retryStream : this.#c.keys.stream, keys.stream, this.#keyLocks, this.#retryStream],
      [
        this.#c.group,
        this.#c.consumer,
        entryId,
        deliveryCount,
        fromRetry ? '1' : '0',
        keys.channel,
        key,
        messageId,
        this.#keyWaiting,
        ...encodeEntry(envelope),
      ],
    );
    return Number(done);
  }

  /**
   * An entry keel did not write (a foreign XADD, a damaged entry) cannot reach a handler; it is
   * wrapped in an envelope carrying its fields and dead-lettered, so nothing is dropped silently.
   */
  async #parkForeign(
    entryId: string,
    fromRetry: boolean,
    deliveryCount: number,
    fields: string[],
  ): Promise<void> {
    const now = new Date(this.#c.clock.now()).toISOString();
    const envelope: Envelope = {
      id: uuidv7(),
      type: 'keel.undecodable-stream-entry',
      key: null,
      payload: { entryId, fields: Object.fromEntries(fieldMap(fields)) },
      headers: {
        'x-dead-letter-source': this.destination,
        'x-dead-letter-error': 'not a keel envelope: the fields id, type and occurredAt are required',
        'x-dead-letter-attempts': String(deliveryCount),
        'x-dead-letter-first-failed-at': now,
        'x-dead-letter-last-failed-at': now,
      },
      occurredAt: now,
    };
    await this.#moveToDeadLetter(entryId, fromRetry, deliveryCount, envelope, '', envelope.id);
  }
}
