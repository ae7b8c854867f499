import type { Socket } from 'node:net';
import {
  Consumer,
  GenericError,
  IS_CONTROL,
  type FetchOptions,
  type RecordsBatch,
} from '@platformatic/kafka';
import { KeelError } from '../../../errors/index.ts';
import { describeError } from '../../describe-error.ts';
import type { Envelope } from '../../envelope.ts';
import { forceClose } from './kafka-source.ts';
import { outOfRangeAnswer } from './offset-out-of-range.ts';
import { decodeMessage, undecodableEnvelope } from './record-codec.ts';

/** One record of a topic, decoded into an envelope, where it sits. */
export interface KafkaEntry {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  /** The record's timestamp (the producer's create time, unless the topic logs append time). */
  readonly timestamp: Date;
  /**
   * As a source decodes it (`docs/kafka.md`, Records): a record without keel's headers has the
   * id `kafka-<topic>-<partition>-<offset>`; a value that is not JSON has the type
   * `kafka.undecodable`, the raw value in base64 and an `x-keel-decode-error` header.
   */
  readonly envelope: Envelope;
}

/** One partition's part of a fetch. */
export interface FetchedPartition {
  readonly partition: number;
  /** Its records from the offset asked for on, in offset order. */
  readonly entries: KafkaEntry[];
  /**
   * The offset after the last batch the fetch returned, records or not: transaction markers and
   * aborted records take offsets too, and an offset kept at the last record would have every
   * later fetch return the same markers at once.
   */
  readonly next: bigint;
}

/** A partition's records as Kafka holds them now. */
export interface PartitionRange {
  readonly partition: number;
  /** The first retained offset (records before it were deleted by retention). */
  readonly start: bigint;
  /** The offset the next record written takes (the high watermark). */
  readonly end: bigint;
}

/** Which topic of the name the client's metadata says is current (KIP-516 topic ids), and its size. */
export interface TopicIncarnation {
  /**
   * The topic id: a UUID Kafka gives each topic at its creation, so a topic deleted and created
   * again under the same name has another. `null` from a broker that has none (the all-zero id of
   * clusters from before Kafka 2.8).
   */
  readonly id: string | null;
  readonly partitions: number;
}

/** What one fetch came to. */
export type FetchOutcome =
  /**
   * `topicId`: the topic the records are of. The fetch names the topic by id (Fetch v13+), and
   * Kafka refuses an id it no longer knows, so records are never of another topic than this.
   */
  | { kind: 'fetched'; topicId: string | null; partitions: FetchedPartition[] }
  /**
   * Kafka no longer knows the topic (or a partition) the client's cached metadata named
   * (UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION): the topic was deleted, perhaps created again,
   * or a partition moved. Nothing was fetched; the next call asks Kafka for the metadata. The
   * same answer to the fetch after it throws instead (`KEEL_BROKER_UNAVAILABLE`, a stale-leader
   * failure in `staleLeaderAnswers`' terms), so a caller that looks again at once does not spin.
   */
  | { kind: 'metadata-stale' }
  /**
   * Kafka refused an offset asked for as outside what its partition holds, below its first
   * retained record or past its end, and fetched nothing; or its answer could not be read
   * (`outOfRangeAnswer`), as a leader in the midst of its switch-over may give. Its answer says
   * neither which partition nor which way, nor whether the broker that gave it was current:
   * `ranges` is what each partition holds, asked for right after (`resumePlan` decides from them).
   */
  | { kind: 'out-of-range'; ranges: PartitionRange[]; cause: unknown };

export interface TopicFetcherSettings {
  clientId: string;
  brokers: string[];
  /**
   * `'always'`: the connections keep the process alive while open, as sockets do. `'while-busy'`:
   * only while a call is in flight, so a process that has nothing else left to do exits without
   * `close()` (a command line that read once). Default `'always'`.
   */
  holdsProcess?: 'always' | 'while-busy';
}

type FetchRequestPartition = FetchOptions<
  Buffer,
  Buffer,
  Buffer,
  Buffer
>['topics'][number]['partitions'][number];
type FetchResponse = Awaited<ReturnType<Consumer['fetch']>>;

// Kafka's own default for max.partition.fetch.bytes: a batch per partition per fetch.
const partitionMaxBytes = 1_048_576;

/** The topic id of a topic without one (KIP-516): brokers from before Kafka 2.8 send it. */
const noTopicId = '00000000-0000-0000-0000-000000000000';

/**
 * Reads one topic by manual assignment: plain Fetch requests to each partition's leader from
 * offsets the caller keeps. No consumer group is joined and nothing is committed to Kafka, so no
 * rebalance ever moves a partition away and no group offset matters.
 */
export class TopicFetcher {
  readonly topic: string;
  readonly #consumer: Consumer<Buffer, Buffer, Buffer, Buffer>;
  /** A fetch failed: the leaders may have moved, so the next look asks Kafka, not the cache. */
  #stale = false;
  /**
   * The last fetch was refused as of a topic its leader does not know, and came back as
   * `metadata-stale`: the metadata has been asked of Kafka since, so the same answer again is a
   * leader behind the metadata, not a cache behind the topic.
   */
  #refusedAsUnknown = false;
  /** With `holdsProcess: 'while-busy'`: the open sockets, and how many calls are in flight. */
  readonly #sockets: Set<Socket> | undefined;
  #busy = 0;

  constructor(topic: string, settings: TopicFetcherSettings) {
    this.topic = topic;
    this.#consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      clientId: settings.clientId,
      bootstrapBrokers: settings.brokers,
      // The client requires one; fetching by assignment never joins it.
      groupId: `keel.unjoined.${topic}`,
      autocommit: false,
      // The caller retries on its own clock; the client's retries would hide the failure for seconds.
      retries: 0,
    });
    if (settings.holdsProcess === 'while-busy') {
      const sockets = new Set<Socket>();
      this.#sockets = sockets;
      this.#consumer.connections.on('connect', ({ connection }) => {
        const socket = connection.socket;
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
        if (this.#busy === 0) socket.unref();
      });
    }
  }

  /**
   * The topic's id and partition count, from the client's metadata: cached for up to 5 s
   * (the client's `metadataMaxAge`) unless `fresh`, or a failure since made it stale, so it
   * costs no round trip on most calls. Undefined while the topic does not exist.
   */
  current(fresh = false): Promise<TopicIncarnation | undefined> {
    return this.#whileBusy(async () => {
      if (fresh) this.#stale = true;
      const topic = await this.#metadata();
      return topic === undefined ? undefined : { id: topicIdOf(topic.id), partitions: topic.partitionsCount };
    });
  }

  /** Every partition's first retained offset and end; none while the topic does not exist. */
  ranges(): Promise<PartitionRange[]> {
    return this.#whileBusy(() => this.#ranges());
  }

  /**
   * One Fetch per leader of the partitions in `from`, each from its offset: the records there
   * now, or the first to arrive within `maxWaitMs` (the broker holds the request that long).
   * The partitions the fetch moved past their offset; or, when Kafka refused an offset as out of
   * range, the partitions' ranges instead.
   */
  fetch(from: ReadonlyMap<number, bigint>, maxWaitMs: number): Promise<FetchOutcome> {
    return this.#whileBusy(() => this.#fetch(from, maxWaitMs));
  }

  async close(): Promise<void> {
    await this.#consumer.close().catch(() => forceClose(this.#consumer));
  }

  async #ranges(): Promise<PartitionRange[]> {
    try {
      if ((await this.#metadata()) === undefined) return [];
      const starts = (await this.#consumer.listOffsets({ topics: [this.topic], timestamp: -2n })).get(
        this.topic,
      );
      const ends = (await this.#consumer.listOffsets({ topics: [this.topic], timestamp: -1n })).get(
        this.topic,
      );
      return (ends ?? []).map((end, partition) => ({ partition, start: starts?.[partition] ?? 0n, end }));
    } catch (error) {
      throw error instanceof KeelError ? error : this.#failed('list the offsets of', error);
    }
  }

  async #fetch(from: ReadonlyMap<number, bigint>, maxWaitMs: number): Promise<FetchOutcome> {
    const topic = await this.#metadata();
    if (topic === undefined) return { kind: 'fetched', topicId: null, partitions: [] };
    const topicId = topicIdOf(topic.id);
    const byLeader = new Map<number, FetchRequestPartition[]>();
    for (const [partition, fetchOffset] of from) {
      const leader = topic.partitions[partition]?.leader;
      if (leader === undefined) continue;
      const list = byLeader.get(leader) ?? [];
      list.push({ partition, fetchOffset, currentLeaderEpoch: -1, lastFetchedEpoch: -1, partitionMaxBytes });
      byLeader.set(leader, list);
    }
    let responses: FetchResponse[];
    try {
      responses = await Promise.all(
        [...byLeader].map(([node, partitions]) =>
          this.#consumer.fetch({
            node,
            maxWaitTime: maxWaitMs,
            topics: [{ topicId: topic.id, partitions }],
          }),
        ),
      );
    } catch (error) {
      const found = (apiId: string): boolean => {
        const match = (error as Partial<GenericError>).findBy?.('apiId', apiId);
        return match !== undefined && match !== null;
      };
      const unknown = found('UNKNOWN_TOPIC_ID') || found('UNKNOWN_TOPIC_OR_PARTITION');
      const again = this.#refusedAsUnknown;
      this.#refusedAsUnknown = unknown;
      // The metadata may have been cached: ask Kafka at the next look. Asked of Kafka since and
      // still naming what its leader does not know (a topic a moment old), it is a failure, which
      // the runner retries after a delay. Whether this call's metadata came from Kafka says
      // nothing: a look asks for the metadata first, so its fetch always finds it cached.
      if (unknown && !again) {
        this.#stale = true;
        return { kind: 'metadata-stale' };
      }
      if (outOfRangeAnswer(error) === undefined) throw this.#failed('fetch', error);
      // The topic may have been recreated under the same name (a new topic id), or its leader
      // moved: look again on fresh metadata.
      this.#stale = true;
      return { kind: 'out-of-range', ranges: await this.#ranges(), cause: error };
    }
    this.#refusedAsUnknown = false;
    const fetched: FetchedPartition[] = [];
    for (const response of responses) {
      for (const { partitions } of response.responses) {
        for (const { partitionIndex: partition, records } of partitions) {
          const asked = from.get(partition) ?? 0n;
          const last = records?.at(-1);
          const next = last === undefined ? asked : last.firstOffset + BigInt(last.lastOffsetDelta) + 1n;
          if (next <= asked) continue;
          fetched.push({ partition, entries: entriesOf(this.topic, partition, records, asked), next });
        }
      }
    }
    return { kind: 'fetched', topicId, partitions: fetched };
  }

  async #metadata(): Promise<
    { id: string; partitionsCount: number; partitions: { leader: number }[] } | undefined
  > {
    try {
      const cluster = await this.#consumer.metadata({ topics: [this.topic], forceUpdate: this.#stale });
      this.#stale = false;
      return cluster.topics.get(this.topic);
    } catch (error) {
      // Not created yet (topics are created by their first publish): nothing to read, not a failure.
      if (error instanceof GenericError && /^Unknown topic /.test(error.message)) return undefined;
      throw this.#failed('look up', error);
    }
  }

  #failed(what: string, error: unknown): KeelError {
    this.#stale = true;
    return new KeelError(
      'KEEL_BROKER_UNAVAILABLE',
      `could not ${what} Kafka topic ${this.topic}: ${describeError(error)}`,
      { cause: error, details: { topic: this.topic } },
    );
  }

  /** Runs `work` with this client's sockets holding the process (`holdsProcess: 'while-busy'`). */
  async #whileBusy<T>(work: () => Promise<T>): Promise<T> {
    const sockets = this.#sockets;
    if (sockets === undefined) return work();
    if (this.#busy++ === 0) for (const socket of sockets) socket.ref();
    try {
      return await work();
    } finally {
      if (--this.#busy === 0) for (const socket of sockets) socket.unref();
    }
  }
}

/** A topic id as the client reads it (lower-case hex with dashes); `null` for the all-zero id. */
function topicIdOf(id: string): string | null {
  return id === noTopicId ? null : id.toLowerCase();
}

/**
 * The records of one partition's fetched batches from offset `from` on, decoded. A fetch
 * returns whole batches, so a batch can begin before `from`; transaction markers (control
 * batches) are not records.
 */
export function entriesOf(
  topic: string,
  partition: number,
  batches: readonly RecordsBatch[] | undefined,
  from: bigint,
): KafkaEntry[] {
  const entries: KafkaEntry[] = [];
  for (const batch of batches ?? []) {
    if ((batch.attributes & IS_CONTROL) !== 0) continue;
    for (const record of batch.records) {
      const offset = batch.firstOffset + BigInt(record.offsetDelta);
      if (offset < from) continue;
      const timestamp = batch.firstTimestamp + record.timestampDelta;
      const headers = new Map<Buffer, Buffer>();
      for (const [name, value] of record.headers) {
        if (name !== null) headers.set(name, value ?? Buffer.alloc(0));
      }
      const consumed = { key: record.key, value: record.value, headers, timestamp, topic, partition, offset };
      entries.push({
        topic,
        partition,
        offset,
        timestamp: new Date(Number(timestamp)),
        envelope: decodedOrUndecodable(consumed),
      });
    }
  }
  return entries;
}

function decodedOrUndecodable(record: Parameters<typeof decodeMessage>[0]): Envelope {
  try {
    return decodeMessage(record).envelope;
  } catch (error) {
    // As a source hands it to a handler: the projection decides (record it and pass over, say).
    return undecodableEnvelope(record, error);
  }
}
