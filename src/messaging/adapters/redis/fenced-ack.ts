import type { Redis } from 'ioredis';
import type { RedisStreamDelivery } from './redis-streams-source.ts';
import { ackScript } from './scripts.ts';

/**
 * Acknowledges `deliveries` in one script (`ackScript`), each only if this consumer still holds
 * it with the delivery count it claimed; resolves with those it did not acknowledge.
 *
 * `keys`: the destination's stream, the group's retry stream, this consumer's taken set.
 */
export async function fencedAck(
  client: Redis,
  keys: readonly [stream: string, retryStream: string, taken: string],
  group: string,
  consumer: string,
  deliveries: readonly RedisStreamDelivery[],
): Promise<RedisStreamDelivery[]> {
  // The stream's deliveries first, then the retry stream's (rarely any).
  let main = deliveries;
  let retry: readonly RedisStreamDelivery[] = [];
  if (deliveries.some((d) => d.fromRetry)) {
    main = deliveries.filter((d) => !d.fromRetry);
    retry = deliveries.filter((d) => d.fromRetry);
  }
  const args: (string | number)[] = [group, consumer, main.length];
  // Counts are sent only when one is not 1: most acks are of first deliveries.
  let counts = '';
  if (deliveries.some((d) => d.deliveryCount !== 1)) {
    counts = [...main, ...retry].map((d) => d.deliveryCount).join(',');
  }
  args.push(counts);
  for (const d of main) args.push(d.entryId);
  for (const d of retry) args.push(d.entryId);
  const refused = (await ackScript.run(client, keys, args, true)) as number[] | null;
  if (refused === null || refused.length === 0) return [];
  return refused.map((i) => (i < main.length ? main[i]! : retry[i - main.length]!));
}
