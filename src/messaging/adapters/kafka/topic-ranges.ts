import { InvalidArgumentError } from '../../../errors/index.ts';
import { assertTopic, resolveOptions } from './kafka-options.ts';
import { TopicFetcher, type PartitionRange } from './topic-fetcher.ts';

export interface KafkaTopicRangesOptions {
  /** The topic whose partitions are read. */
  topic: string;
  /** Bootstrap servers, `host:port`. Default: `KEEL_KAFKA_BROKERS` (comma-separated), else `127.0.0.1:9092`. */
  brokers?: readonly string[];
  /** Client id sent to Kafka. Default `keel`. */
  clientId?: string;
}

/**
 * Each partition's first retained offset and end as Kafka has them now, read over one connection
 * kept from read to read: for a process that asks again and again (a status page), where
 * `KafkaProjectionRunner.partitions()` without `start()` opens a connection per call.
 *
 * The connection opens at the first read; concurrent reads share it. A read that fails closes
 * it, and the next read opens a new one (Kafka restarted, a broker gone). Between reads the
 * connection does not keep the process alive, so a command line that read once exits when it is
 * done, `close()` or not. `close()` ends the connection (idempotent; a read in flight then
 * fails); a read after it opens another.
 */
export class KafkaTopicRanges {
  readonly topic: string;
  readonly #settings: { clientId: string; brokers: string[] };
  #fetcher: TopicFetcher | undefined;

  constructor(options: KafkaTopicRangesOptions) {
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('options', 'an object with topic', options);
    assertTopic('topic', options.topic);
    const resolved = resolveOptions({
      ...(options.brokers === undefined ? {} : { brokers: options.brokers }),
      ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
    });
    this.topic = options.topic;
    this.#settings = { clientId: resolved.clientId, brokers: resolved.brokers };
  }

  /** Every partition's range; none while the topic does not exist. Kafka down: `KEEL_BROKER_UNAVAILABLE`. */
  async ranges(): Promise<PartitionRange[]> {
    const fetcher = (this.#fetcher ??= new TopicFetcher(this.topic, {
      ...this.#settings,
      holdsProcess: 'while-busy',
    }));
    try {
      return await fetcher.ranges();
    } catch (error) {
      // The next read starts from a new client: whatever state this one was left in goes with it.
      if (this.#fetcher === fetcher) this.#fetcher = undefined;
      await fetcher.close();
      throw error;
    }
  }

  async close(): Promise<void> {
    const fetcher = this.#fetcher;
    this.#fetcher = undefined;
    await fetcher?.close();
  }
}
