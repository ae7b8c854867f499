// Kafka's error answers built as the Kafka client builds them, and wrapped as TopicFetcher
// wraps them: for the unit tests of what a projection runner retries. Not part of the public door.
import { ResponseError } from '@platformatic/kafka';
import { KeelError } from '../../../errors/index.ts';

export const fetchApi = 1;
export const listOffsetsApi = 2;

const codes: Record<string, number> = {
  OFFSET_OUT_OF_RANGE: 1,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  LEADER_NOT_AVAILABLE: 5,
  NOT_LEADER_OR_FOLLOWER: 6,
  TOPIC_AUTHORIZATION_FAILED: 29,
  KAFKA_STORAGE_ERROR: 56,
  FENCED_LEADER_EPOCH: 74,
  UNKNOWN_LEADER_EPOCH: 75,
  OFFSET_NOT_AVAILABLE: 78,
  UNKNOWN_TOPIC_ID: 100,
};

/** A response whose partitions answered `answers` (one per partition), as the client throws it. */
export function answered(api: number, ...answers: string[]): ResponseError {
  const errors = Object.fromEntries(
    answers.map((id, partition): [string, [number, null]] => [
      `/responses/0/partitions/${partition}`,
      [codes[id]!, null],
    ]),
  );
  return new ResponseError(api, api === fetchApi ? 17 : 9, errors, {});
}

/**
 * What the client throws when it cannot read an answer: the "Out of bounds." of its buffer
 * (@platformatic/dynamic-buffer's OutOfBoundsError, not a dependency of keel's), passed on as it
 * is by the response's parser.
 */
export function outOfBounds(): Error {
  return Object.assign(new Error('Out of bounds.'), { code: 'OUT_OF_BOUNDS' });
}

/** As TopicFetcher reports a failed call. */
export function wrapped(cause: unknown): KeelError {
  return new KeelError('KEEL_BROKER_UNAVAILABLE', 'could not fetch Kafka topic orders', {
    cause,
    details: { topic: 'orders' },
  });
}
