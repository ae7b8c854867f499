import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { InvalidArgumentError, KeelError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import type { BrokerCapabilities, MessageBroker, PublishOptions, SourceOptions } from '../../broker.ts';
import type { Envelope } from '../../envelope.ts';
import type { Handler } from '../../handler.ts';
import { PublishError } from '../../publisher.ts';
import { QueueConsumer, type QueueConsumerOptions } from '../../queue-consumer.ts';
import { RedisStreamsSource, type DelayedDue } from './redis-streams-source.ts';
import { redriveScript, repairKeyLocksScript } from './scripts.ts';
import { appendEntries, type Refusals } from './append-entries.ts';
import { deadLetterHeaders, decodeEntry, encodeAll, encodeEntry, type Fields } from './stream-entry.ts';
import { assertName, StreamKeys } from './stream-keys.ts';
import {
  destinationStats,
  replayStream,
  type DestinationStats,
  type ReplayedEntry,
  type ReplayOptions,
} from './stream-inspection.ts';
import { WakeSubscriber } from './wake-subscriber.ts';

export interface RedisStreamsBrokerOptions {
  /**
   * An ioredis client the application owns: the broker uses it and never closes it, and opens
   * one more connection from it (`duplicate()`) for wake-ups. Give either this or `redis`.
   */
  client?: Redis;
  /**
   * Options for a client the broker opens and closes. Default `{ host: '127.0.0.1', port: 6379,
   * connectionName: 'keel-streams', enableAutoPipelining: true }`, merged under these.
   */
  redis?: RedisOptions;
  /** Prefix of every key and channel. Default `keel:stream:`. */
  keyPrefix?: string;
  /** Consumer group of sources that name none. Default `keel`. */
  group?: string;
  /** Default lease of a claimed entry before another consumer of the group takes it over. Default 30 000 ms. */
  leaseMs?: number;
  /**
   * Where a group that does not exist yet starts reading when its first source opens: `earliest`
   * (every entry still in the stream, the default: nothing published before the first consumer
   * started is missed) or `latest` (only entries added afterwards).
   */
  groupStart?: 'earliest' | 'latest';
  /**
   * How much of each destination's stream to keep once read; applied on every XADD, approximately
   * (`~`). Default: keep everything (memory grows until you trim). Trimming removes entries whether
   * or not every group has read them: a group slower than the retention loses messages.
   */
  retention?: { maxLength: number } | { maxAgeMs: number };
  /**
   * `per-key`: a group handles one message of a key at a time, in stream order, even across
   * retries; other keys go on in parallel. Costs a Lua script on every claim and on every ack of
   * a keyed message. Default `none`.
   */
  ordering?: 'none' | 'per-key';
  /** PUBLISH a wake-up after each publish so waiting consumers claim at once. Default true. */
  wakeOnPublish?: boolean;
  clock?: Clock;
}

const capabilities: BrokerCapabilities = {
  // Concurrency and retries reorder; nothing serialises a key, unless `ordering: 'per-key'`.
  ordering: 'none',
  // Entries stay in the stream after XACK: `replay` reads them again from any id or time.
  replayable: true,
  consumerGroups: true,
  // A failed entry comes back after its delay through the group's retry set, without the handler's code republishing it.
  redeliversOnNack: true,
  // `availableAt` parks the message in a sorted set until due.
  delayedDelivery: true,
};

interface Resolved {
  keyPrefix: string;
  group: string;
  leaseMs: number;
  groupStart: '0' | '$';
  retention: RedisStreamsBrokerOptions['retention'];
  wakeOnPublish: boolean;
  perKey: boolean;
  clock: Clock;
}

function resolveOptions(options: RedisStreamsBrokerOptions): Resolved {
  const keyPrefix = options.keyPrefix ?? 'keel:stream:';
  if (typeof keyPrefix !== 'string' || keyPrefix.length === 0 || /[{}]/.test(keyPrefix)) {
    throw new InvalidArgumentError('keyPrefix', 'a non-empty string without { or }', keyPrefix);
  }
  const group = options.group ?? 'keel';
  assertName(group, 'group');
  const leaseMs = options.leaseMs ?? 30_000;
  assertLease(leaseMs);
  const groupStart = options.groupStart ?? 'earliest';
  if (groupStart !== 'earliest' && groupStart !== 'latest') {
    throw new InvalidArgumentError('groupStart', "'earliest' or 'latest'", groupStart);
  }
  const ordering = options.ordering ?? 'none';
  if (ordering !== 'none' && ordering !== 'per-key') {
    throw new InvalidArgumentError('ordering', "'none' or 'per-key'", ordering);
  }
  const retention = options.retention;
  if (retention !== undefined) {
    const [field, value] =
      'maxLength' in retention
        ? ['retention.maxLength', retention.maxLength]
        : ['retention.maxAgeMs', retention.maxAgeMs];
    if (!Number.isInteger(value) || value < 1)
      throw new InvalidArgumentError(field, 'an integer >= 1', value);
  }
  return {
    keyPrefix,
    group,
    leaseMs,
    groupStart: groupStart === 'earliest' ? '0' : '$',
    retention,
    wakeOnPublish: options.wakeOnPublish ?? true,
    perKey: ordering === 'per-key',
    clock: options.clock ?? systemClock,
  };
}

function assertLease(leaseMs: unknown): asserts leaseMs is number {
  if (typeof leaseMs !== 'number' || !Number.isInteger(leaseMs) || leaseMs < 1) {
    throw new InvalidArgumentError('leaseMs', 'an integer >= 1 (milliseconds)', leaseMs);
  }
}

/**
 * Redis Streams behind keel's `MessageBroker`: a destination is a stream, consumers of one group
 * compete for its entries, each group gets every entry. See docs/redis-streams.md.
 *
 * Publishing runs one XADD per message in scripts (a call per 100 messages) and resolves when
 * Redis has added every one: the entries are in the server's memory, and on disk only as the
 * server's AOF settings say.
 */
export class RedisStreamsBroker implements MessageBroker {
  readonly name = 'redis-streams';
  readonly capabilities: BrokerCapabilities;
  readonly #client: Redis;
  readonly #ownsClient: boolean;
  readonly #o: Resolved;
  readonly #subscriber: WakeSubscriber;
  readonly #keys = new Map<string, StreamKeys>();
  readonly #due = new Map<string, DelayedDue>();
  #closed = false;

  constructor(options: RedisStreamsBrokerOptions = {}) {
    this.#o = resolveOptions(options);
    this.capabilities = this.#o.perKey ? { ...capabilities, ordering: 'per-key' } : capabilities;
    if (options.client !== undefined) {
      this.#client = options.client;
      this.#ownsClient = false;
    } else {
      this.#client = new Redis({
        host: '127.0.0.1',
        port: 6379,
        connectionName: 'keel-streams',
        enableAutoPipelining: true,
        ...options.redis,
      });
      // Failures reach the caller through the command that failed; the event alone would crash.
      this.#client.on('error', () => undefined);
      this.#ownsClient = true;
    }
    this.#subscriber = new WakeSubscriber(() => this.#client.duplicate());
  }

  /** The connection the broker sends commands on (yours, if you passed `client`). */
  get client(): Redis {
    return this.#client;
  }

  /** The Redis key of a destination's stream, for `redis-cli` and monitoring: `keel:stream:{orders}`. */
  streamKey(destination: string): string {
    assertName(destination, 'destination');
    return this.#keysOf(destination).stream;
  }

  /**
   * Appends the messages, an XADD each, run by a script on the server (`appendEntries`); with
   * `availableAt` in the future, parks them in the destination's delayed set instead. Resolves
   * when Redis has added every one; rejects with `PublishError` naming the messages Redis refused
   * or that got no answer (the others were added).
   */
  async publish(
    destination: string,
    messages: readonly Envelope[],
    options: PublishOptions = {},
  ): Promise<void> {
    assertName(destination, 'destination');
    const availableAt = options.availableAt;
    if (availableAt !== undefined && !Number.isFinite(availableAt)) {
      throw new InvalidArgumentError('availableAt', 'a time in ms since the epoch', availableAt);
    }
    if (this.#closed) {
      throw new PublishError(
        destination,
        messages.map((m) => m.id),
        new KeelError('KEEL_SERVICE_STATE', 'the Redis Streams broker is closed'),
      );
    }
    if (messages.length === 0) return;
    const entries = encodeAll(messages);
    const keys = this.#keysOf(destination);
    const delayed = availableAt !== undefined && availableAt > this.#o.clock.now();
    if (delayed) {
      const refusals = await this.#parkDelayed(keys, availableAt, entries);
      if (refusals.size > 0) throw publishFailure(destination, messages, refusals);
      const due = this.#dueOf(destination);
      due.version++;
      due.nextDelayed = Math.min(due.nextDelayed, availableAt);
      return;
    }
    const appended = appendEntries(this.#client, keys.stream, this.#trim(), entries);
    // Sent behind the entries on the same connection, so a consumer it wakes finds them, and in
    // the same round trip. Best effort: a lost wake-up leaves the entries to the next poll.
    const woken = this.#o.wakeOnPublish
      ? this.#client.publish(keys.channel, '').catch(() => undefined)
      : undefined;
    const [refusals] = await Promise.all([appended, woken]);
    if (refusals.size > 0) throw publishFailure(destination, messages, refusals);
  }

  /** A new consumer of `destination` in its group; each call is a new consumer name. */
  source(destination: string, options: SourceOptions & { clock?: Clock } = {}): RedisStreamsSource {
    assertName(destination, 'destination');
    const group = options.group ?? this.#o.group;
    assertName(group, 'group');
    const leaseMs = options.leaseMs ?? this.#o.leaseMs;
    assertLease(leaseMs);
    const deadLetter = options.deadLetterDestination ?? `${destination}.dead-letter`;
    assertName(deadLetter, 'deadLetterDestination');
    if (this.#closed) throw new KeelError('KEEL_SERVICE_STATE', 'the Redis Streams broker is closed');
    return new RedisStreamsSource({
      client: this.#client,
      destination,
      keys: this.#keysOf(destination),
      deadLetter: { destination: deadLetter, keys: this.#keysOf(deadLetter) },
      group,
      consumer: `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`,
      leaseMs,
      groupStart: this.#o.groupStart,
      trim: () => this.#trim(),
      clock: options.clock ?? this.#o.clock,
      subscriber: this.#subscriber,
      promoteLimit: 256,
      due: this.#dueOf(destination),
      perKey: this.#o.perKey,
    });
  }

  /** A consumer running `handler` over a new source. Start it to begin. */
  consumer(
    destination: string,
    handler: Handler,
    options: QueueConsumerOptions & SourceOptions = {},
  ): QueueConsumer {
    // One clock for the runtime's backoff and the source's due times.
    const clock = options.clock ?? this.#o.clock;
    return new QueueConsumer(this.source(destination, { ...options, clock }), handler, { ...options, clock });
  }

  /**
   * Moves up to `limit` dead letters (oldest first) to `to`, or to the destination each came from
   * (`x-dead-letter-source`); one without either stays. Each move is one script: XDEL from the
   * dead-letter stream, XADD to the target without the `x-dead-letter-*` headers, with a fresh
   * attempt count and `x-redrive-count` raised by one. Two redrives at once never move an entry twice.
   */
  async redrive(
    deadLetterDestination: string,
    options: { to?: string; limit?: number } = {},
  ): Promise<number> {
    assertName(deadLetterDestination, 'deadLetterDestination');
    if (options.to !== undefined) assertName(options.to, 'to');
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    if (limit !== Number.POSITIVE_INFINITY && (!Number.isInteger(limit) || limit < 1)) {
      throw new InvalidArgumentError('limit', 'an integer >= 1', limit);
    }
    const source = this.#keysOf(deadLetterDestination);
    let moved = 0;
    let cursor = '-';
    while (moved < limit) {
      const page = await this.#client.xrange(source.stream, cursor, '+', 'COUNT', 200);
      if (page.length === 0) break;
      for (const [entryId, fields] of page) {
        if (moved >= limit) break;
        const entry = decodeEntry(fields);
        const to = options.to ?? entry?.envelope.headers['x-dead-letter-source'];
        if (entry === undefined || to === undefined || !isName(to)) continue;
        const headers: Record<string, string> = { ...entry.envelope.headers };
        for (const name of deadLetterHeaders) delete headers[name];
        headers['x-redrive-count'] = String(Number(headers['x-redrive-count'] ?? 0) + 1);
        const target = this.#keysOf(to);
        const [kind, threshold] = this.#trim();
        const done = await redriveScript.run(
          this.#client,
          [source.stream, target.stream],
          [entryId, target.channel, kind, threshold, ...encodeEntry({ ...entry.envelope, headers })],
        );
        if (done === 1) moved++;
      }
      cursor = `(${page[page.length - 1]![0]}`;
    }
    return moved;
  }

  /**
   * Per-key ordering: frees every key of `group` (default the broker's) whose lock is held by a
   * message that is gone (its pending entry trimmed by retention, keys deleted by hand), handing
   * it to the key's next waiting message. Returns how many keys were repaired. An operator's
   * tool: it reads the group's whole pending list and retry sets.
   */
  async repairKeyLocks(destination: string, options: { group?: string } = {}): Promise<number> {
    assertName(destination, 'destination');
    const group = options.group ?? this.#o.group;
    assertName(group, 'group');
    const keys = this.#keysOf(destination);
    const repaired = await repairKeyLocksScript.run(
      this.#client,
      [keys.stream, keys.retry(group), keys.retryDelayed(group), keys.keyLocks(group)],
      [group, keys.keyWaiting(group)],
    );
    return Number(repaired);
  }

  /**
   * Reads a destination's stream again from `from` (default its first entry), oldest first,
   * whether or not any group has read or acknowledged the entries. Retries and messages that are
   * not due yet are not in it; entries keel cannot decode are skipped.
   */
  replay(destination: string, options: ReplayOptions = {}): AsyncGenerator<ReplayedEntry> {
    assertName(destination, 'destination');
    return replayStream(this.#client, this.#keysOf(destination).stream, options);
  }

  /** What a destination holds right now, per group: for dashboards and alerts. */
  async stats(destination: string): Promise<DestinationStats> {
    assertName(destination, 'destination');
    return destinationStats(this.#client, this.#keysOf(destination));
  }

  /** Closes the wake-up connection, and the command connection if the broker opened it. Stop consumers first. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#subscriber.close();
    if (!this.#ownsClient) return;
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }

  #keysOf(destination: string): StreamKeys {
    let keys = this.#keys.get(destination);
    if (keys === undefined) {
      keys = new StreamKeys(this.#o.keyPrefix, destination);
      this.#keys.set(destination, keys);
    }
    return keys;
  }

  #dueOf(destination: string): DelayedDue {
    let due = this.#due.get(destination);
    if (due === undefined) {
      due = { nextDelayed: Number.POSITIVE_INFINITY, version: 0 };
      this.#due.set(destination, due);
    }
    return due;
  }

  /** Parks entries in the destination's delayed set until `availableAt`; returns the refused ones. */
  async #parkDelayed(keys: StreamKeys, availableAt: number, entries: readonly Fields[]): Promise<Refusals> {
    const pipeline = this.#client.pipeline();
    for (const fields of entries) pipeline.zadd(keys.delayed, availableAt, JSON.stringify(fields));
    const refusals: Refusals = new Map();
    let results: [Error | null, unknown][] | null;
    try {
      results = await pipeline.exec();
    } catch (error) {
      entries.forEach((_, i) => refusals.set(i, error));
      return refusals;
    }
    entries.forEach((_, i) => {
      const error = results?.[i]?.[0] ?? (results?.[i] === undefined ? new Error('no reply') : null);
      if (error) refusals.set(i, error);
    });
    return refusals;
  }

  #trim(): readonly ['' | 'MAXLEN' | 'MINID', string] {
    const retention = this.#o.retention;
    if (retention === undefined) return ['', ''];
    if ('maxLength' in retention) return ['MAXLEN', String(retention.maxLength)];
    return ['MINID', `${Math.max(0, this.#o.clock.now() - retention.maxAgeMs)}-0`];
  }
}

/** The publish failed for the messages at the refused indices; the first refusal recorded is the cause. */
function publishFailure(
  destination: string,
  messages: readonly Envelope[],
  refusals: Refusals,
): PublishError {
  const failed = messages.filter((_, i) => refusals.has(i)).map((m) => m.id);
  return new PublishError(destination, failed, refusals.values().next().value);
}

function isName(value: string): boolean {
  try {
    assertName(value, 'x-dead-letter-source');
    return true;
  } catch {
    return false;
  }
}
