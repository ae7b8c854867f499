import type { Redis } from 'ioredis';
import { publishScript } from './scripts.ts';
import type { Fields } from './stream-entry.ts';

/**
 * Most entries one script call adds. Each call is sent as soon as it is encoded, so Redis runs
 * one while the client encodes the next (a call of the whole batch left Redis idle until the
 * client had encoded all of it, then the client idle while Redis ran it); and Redis runs a
 * script alone, so a call stays well under a millisecond.
 */
const entriesPerCall = 100;
/** Most bytes of field values one call carries, so large payloads split into several calls. */
const bytesPerCall = 4 * 1024 * 1024;

/** What `appendEntries` could not add: the index of each entry in `entries`, and why. */
export type Refusals = Map<number, unknown>;

/**
 * Adds `entries` to `stream` with `publishScript`, in calls of at most `entriesPerCall` entries
 * and about `bytesPerCall` bytes, each written to the connection as soon as it is encoded (one
 * connection: Redis runs them in order). Resolves with the entries Redis refused or that got no
 * answer; empty when all were added. EVAL rather than EVALSHA (see `LuaScript.evalNow`): the
 * calls of one publish must run in order, the per-key ordering of consumers depends on it.
 */
export async function appendEntries(
  client: Redis,
  stream: string,
  trim: readonly [string, string],
  entries: readonly Fields[],
): Promise<Refusals> {
  const refusals: Refusals = new Map();
  const calls: Promise<void>[] = [];
  const send = (first: number, count: number, args: string[]): void => {
    calls.push(
      publishScript.evalNow(client, [stream], args).then(
        (refused) => {
          const list = refused as unknown[];
          for (let i = 0; i < list.length; i += 2)
            refusals.set(first + Number(list[i]), new Error(String(list[i + 1])));
        },
        (error: unknown) => {
          for (let i = 0; i < count; i++) refusals.set(first + i, error);
        },
      ),
    );
  };
  let args: string[] = [...trim];
  let first = 0;
  let bytes = 0;
  entries.forEach((fields, index) => {
    const size = fields.reduce((sum, value) => sum + value.length, 0);
    if (index > first && (index - first >= entriesPerCall || bytes + size > bytesPerCall)) {
      send(first, index - first, args);
      args = [...trim];
      first = index;
      bytes = 0;
    }
    args.push(String(fields.length), ...fields);
    bytes += size;
  });
  send(first, entries.length - first, args);
  await Promise.all(calls);
  return refusals;
}
