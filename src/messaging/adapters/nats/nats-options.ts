import type { NatsConnection } from '@nats-io/transport-node';
import { InvalidArgumentError } from '../../../errors/index.ts';
import { systemClock, type Clock } from '../../../time/index.ts';
import { assertToken } from './names.ts';

export interface NatsJetStreamBrokerOptions {
  /**
   * A connection the application owns: the broker uses it and never closes it. Give either this
   * or `servers`.
   */
  connection?: NatsConnection;
  /** Servers for a connection the broker opens and closes. Default `KEEL_NATS_URL`, else `127.0.0.1:4222`. */
  servers?: string | string[];
  /** Shown as the connection name in the server's monitoring. Default `keel`. */
  name?: string;
  /** First token of every subject and start of every stream name. Letters, digits and `-`. Default `keel`. */
  prefix?: string;
  /** Consumer group (the durable consumer's name) of sources that name none. Default `keel`. */
  group?: string;
  /**
   * The durable consumer's `ack_wait`: how long a delivered message is held before JetStream gives
   * it to another consumer of the group. Set when the group's consumer is created. Default 30 000 ms.
   */
  leaseMs?: number;
  /**
   * Where a group that does not exist yet starts: `earliest` (every message in the stream: nothing
   * published before the first consumer started is missed; the default) or `latest`.
   */
  groupStart?: 'earliest' | 'latest';
  /** `file` (the default: survives a server restart) or `memory`. Fixed when a stream is created. */
  storage?: 'file' | 'memory';
  /** Copies of each stream in a cluster; a publish is acknowledged once a majority has it. Default 1. */
  replicas?: number;
  /**
   * How much of each destination's stream to keep; every message read or not (limits retention).
   * Default: keep everything (the stream grows until you trim it). A group slower than the
   * retention loses messages.
   */
  retention?: { maxMessages?: number; maxBytes?: number; maxAgeMs?: number };
  /** The stream's window for dropping a re-published message id (`Nats-Msg-Id`). Default 120 000 ms. */
  duplicateWindowMs?: number;
  /** How long a publish waits for each JetStream acknowledgement. Default 5 000 ms. */
  publishTimeoutMs?: number;
  /**
   * How long one pull request waits on the server for messages when the stream is empty, ms
   * (at least 1 000). A new one follows at once. Default 5 000.
   */
  pullExpiresMs?: number;
  /** Failure times and the redelivery of failed messages. Default the system clock. */
  clock?: Clock;
  /** Errors that nobody awaits (a pull that failed, an undecodable message not parked). */
  onError?: (error: unknown) => void;
}

export interface Resolved {
  servers: string | string[];
  name: string;
  prefix: string;
  group: string;
  leaseMs: number;
  groupStart: 'earliest' | 'latest';
  storage: 'file' | 'memory';
  replicas: number;
  maxMessages: number;
  maxBytes: number;
  maxAgeMs: number;
  duplicateWindowMs: number;
  publishTimeoutMs: number;
  pullExpiresMs: number;
  clock: Clock;
  onError: (error: unknown) => void;
}

export function assertLease(leaseMs: unknown): asserts leaseMs is number {
  if (typeof leaseMs !== 'number' || !Number.isInteger(leaseMs) || leaseMs < 1) {
    throw new InvalidArgumentError('leaseMs', 'an integer >= 1 (milliseconds)', leaseMs);
  }
}

function positiveInteger(value: unknown, field: string, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(field, `an integer >= ${min}`, value);
  }
  return value;
}

export function resolveOptions(options: NatsJetStreamBrokerOptions): Resolved {
  const servers = options.servers ?? process.env['KEEL_NATS_URL'] ?? '127.0.0.1:4222';
  const list: unknown[] = Array.isArray(servers) ? servers : [servers];
  if (list.length === 0 || list.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new InvalidArgumentError('servers', 'a server address or a non-empty list of them', servers);
  }
  const prefix = options.prefix ?? 'keel';
  assertToken(prefix, 'prefix', /^[A-Za-z0-9-]+$/);
  const group = options.group ?? 'keel';
  assertToken(group, 'group');
  const leaseMs = options.leaseMs ?? 30_000;
  assertLease(leaseMs);
  const groupStart = options.groupStart ?? 'earliest';
  if (groupStart !== 'earliest' && groupStart !== 'latest') {
    throw new InvalidArgumentError('groupStart', "'earliest' or 'latest'", groupStart);
  }
  const storage = options.storage ?? 'file';
  if (storage !== 'file' && storage !== 'memory') {
    throw new InvalidArgumentError('storage', "'file' or 'memory'", storage);
  }
  const retention = options.retention ?? {};
  const limit = (value: number | undefined, field: string): number =>
    value === undefined ? -1 : positiveInteger(value, `retention.${field}`);
  const pullExpiresMs = positiveInteger(options.pullExpiresMs ?? 5000, 'pullExpiresMs', 1000);
  return {
    servers,
    name: options.name ?? 'keel',
    prefix,
    group,
    leaseMs,
    groupStart,
    storage,
    replicas: positiveInteger(options.replicas ?? 1, 'replicas'),
    maxMessages: limit(retention.maxMessages, 'maxMessages'),
    maxBytes: limit(retention.maxBytes, 'maxBytes'),
    maxAgeMs:
      retention.maxAgeMs === undefined ? 0 : positiveInteger(retention.maxAgeMs, 'retention.maxAgeMs'),
    duplicateWindowMs: positiveInteger(options.duplicateWindowMs ?? 120_000, 'duplicateWindowMs'),
    publishTimeoutMs: positiveInteger(options.publishTimeoutMs ?? 5000, 'publishTimeoutMs'),
    pullExpiresMs,
    clock: options.clock ?? systemClock,
    onError: options.onError ?? (() => {}),
  };
}
