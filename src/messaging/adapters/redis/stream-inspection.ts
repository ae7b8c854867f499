import type { Redis } from 'ioredis';
import { InvalidArgumentError } from '../../../errors/index.ts';
import type { Envelope } from '../../envelope.ts';
import { decodeEntry } from './stream-entry.ts';
import type { StreamKeys } from './stream-keys.ts';

/** One entry read back by `replay`. */
export interface ReplayedEntry {
  /** The stream entry id, `1764300000000-0`: pass it as `from` to resume after it. */
  readonly entryId: string;
  readonly envelope: Envelope;
}

export interface ReplayOptions {
  /**
   * Start here: an entry id (exclusive: replay resumes after it) or a time in ms since the epoch
   * (inclusive). Default: the first entry still in the stream.
   */
  from?: string | number;
  /** Entries fetched per XRANGE. Default 500. */
  batchSize?: number;
}

export interface DestinationStats {
  /** Entries in the stream (read or not, until trimmed). */
  readonly length: number;
  /** Messages published for later and not due yet. */
  readonly delayed: number;
  /** Per group: entries claimed and not settled, entries not read yet, retries waiting. */
  readonly groups: readonly { name: string; pending: number; lag: number | null; retrying: number }[];
}

/** Validates at the call, then reads the stream page by page with XRANGE. */
export function replayStream(
  client: Redis,
  stream: string,
  options: ReplayOptions,
): AsyncGenerator<ReplayedEntry> {
  const batchSize = options.batchSize ?? 500;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', 'an integer >= 1', batchSize);
  }
  const from = options.from;
  let cursor: string;
  if (from === undefined) cursor = '-';
  else if (typeof from === 'number' && Number.isInteger(from) && from >= 0) cursor = `${from}-0`;
  else if (typeof from === 'string' && /^\d+-\d+$/.test(from)) cursor = `(${from}`;
  else throw new InvalidArgumentError('from', 'a stream entry id (`<ms>-<seq>`) or a time in ms', from);
  return pages(client, stream, cursor, batchSize);
}

async function* pages(
  client: Redis,
  stream: string,
  from: string,
  batchSize: number,
): AsyncGenerator<ReplayedEntry> {
  let cursor = from;
  for (;;) {
    const page = await client.xrange(stream, cursor, '+', 'COUNT', batchSize);
    for (const [entryId, fields] of page) {
      const entry = decodeEntry(fields);
      if (entry !== undefined) yield { entryId, envelope: entry.envelope };
    }
    if (page.length < batchSize) return;
    cursor = `(${page[page.length - 1]![0]}`;
  }
}

/** Stream length, delayed count and, per group (XINFO GROUPS), pending, lag and waiting retries. */
export async function destinationStats(client: Redis, keys: StreamKeys): Promise<DestinationStats> {
  const [length, delayed] = await Promise.all([client.xlen(keys.stream), client.zcard(keys.delayed)]);
  let raw: unknown[] = [];
  try {
    raw = (await client.xinfo('GROUPS', keys.stream)) as unknown[];
  } catch (error) {
    if (!(error instanceof Error) || !error.message.includes('no such key')) throw error;
  }
  const groups = [];
  for (const flat of raw as unknown[][]) {
    const info = new Map<string, unknown>();
    for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), flat[i + 1]);
    const name = String(info.get('name'));
    const [retryPending, retryLength, waiting] = await Promise.all([
      client
        .xpending(keys.retry(name), name)
        .then((r) => Number(r[0] ?? 0))
        .catch(() => 0),
      client.xlen(keys.retry(name)),
      client.zcard(keys.retryDelayed(name)),
    ]);
    const lag = info.get('lag');
    groups.push({
      name,
      pending: Number(info.get('pending') ?? 0) + retryPending,
      lag: typeof lag === 'number' ? lag : null,
      retrying: waiting + retryLength - retryPending,
    });
  }
  return { length, delayed, groups };
}
