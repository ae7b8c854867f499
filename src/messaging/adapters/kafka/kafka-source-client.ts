// A Kafka source's client: what it is built from, building one, and closing one that lost its
// group coordinator (see kafka-source-recovery.ts).
import { Consumer } from '@platformatic/kafka';
import type { Clock } from '../../../time/index.ts';
import type { EncodedRecord } from './record-codec.ts';

/** The Kafka client a source reads with: one group member. */
export type KafkaConsumer = Consumer<Buffer, Buffer, Buffer, Buffer>;

/** What a source needs from its broker. */
export interface KafkaSourceContext {
  readonly clock: Clock;
  readonly bootstrapBrokers: string[];
  readonly clientId: string;
  ensureTopic(topic: string): Promise<void>;
  /** Produces with acks=all; resolves when every record is acknowledged. */
  send(topic: string, records: EncodedRecord[]): Promise<void>;
}

export interface KafkaSourceSettings {
  group: string;
  deadLetterDestination: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxBuffered: number;
  maxWaitMs: number;
  awaitCommit: boolean;
}

/** A new group member over `settings.group`: a source's first client, or one replacing it. */
export function groupConsumer(context: KafkaSourceContext, settings: KafkaSourceSettings): KafkaConsumer {
  return new Consumer<Buffer, Buffer, Buffer, Buffer>({
    clientId: context.clientId,
    bootstrapBrokers: context.bootstrapBrokers,
    groupId: settings.group,
    sessionTimeout: settings.sessionTimeoutMs,
    heartbeatInterval: settings.heartbeatIntervalMs,
    rebalanceTimeout: Math.max(settings.sessionTimeoutMs, 10_000),
    autocommit: false,
    maxWaitTime: settings.maxWaitMs,
  });
}

/** Closes a client without waiting on a broker that may be gone. */
export function forceClose(client: {
  close(force: boolean, callback: (error?: Error | null) => void): void;
}): Promise<void> {
  return new Promise((resolve) => client.close(true, () => resolve()));
}

/**
 * Closes a group member's client that cannot leave its group: its coordinator is gone or is no
 * longer the group's. The client's `close()` first sends LeaveGroup to the coordinator it knows,
 * and when that is refused it stops there, its connections left open (@platformatic/kafka
 * 1.35.0 consumer.js, `close`: `this[kClosed] = false; callback(error)` before `super.close`);
 * with no member id its leave is a no-op (`#performLeaveGroup`), so its connections close. The
 * group drops the member once its session expires, as it would after a crash.
 */
export async function retire(consumer: KafkaConsumer): Promise<void> {
  consumer.memberId = null;
  await forceClose(consumer);
}

/** Kafka's answers that a client's group coordinator is not, or not yet, the group's. */
const coordinatorAnswers = ['NOT_COORDINATOR', 'COORDINATOR_NOT_AVAILABLE', 'COORDINATOR_LOAD_IN_PROGRESS'];

/** Whether the client's failure `error` carries a coordinator's answer that it is not the group's. */
export function refusedByCoordinator(error: unknown): boolean {
  const failure = error as { findBy?: (property: string, value: unknown) => unknown } | null | undefined;
  if (typeof failure?.findBy !== 'function') return false;
  return coordinatorAnswers.some((id) => failure.findBy!('apiId', id) != null);
}

/** Whether `error` is the client's refusal of a call once it is closed. */
export function closedClient(error: unknown): boolean {
  return (error as { closed?: unknown } | null | undefined)?.closed === true;
}
