import type { Redis } from 'ioredis';
import { publishScript } from './scripts.ts';
import type { Fields } from './stream-entry.ts';

/** Most entries one script call adds: Redis runs a script alone, so a call stays a few ms long. */
const entriesPerCall = 500;
/** Most bytes of field values one call carries, so large payloads split into several calls. */
const bytesPerCall = 4 * 1024 * 1024;

/** What `appendEntries` could not add: the index of each entry in `entries`, and why. */
export type Refusals = Map<number, unknown>;

/**
 * Adds `entries` to `stream` with `publishScript`, in calls of at most `entriesPerCall` entries
 * and about `bytesPerCall` bytes, all sent at once on the one connection (so Redis runs them in
 * order). Resolves with the entries Redis refused or that got no answer; empty when all were added.
 */
export async function appendEntries(
  client: Redis,
  stream: string,
  trim: readonly [string, string],
  entries: readonly Fields[],
): Promise<Refusals> {
  const calls: { first: number; args: string[] }[] = [];
  let args: string[] = [];
  let first = 0;
  let bytes = 0;
  entries.forEach((fields, index) => {
    const size = fields.reduce((sum, value) => sum + value.length, 0);
    if (args.length > 0 && (index - first >= entriesPerCall || bytes + size > bytesPerCall)) {
      calls.push({ first, args });
      args = [];
      first = index;
      bytes = 0;
    }
    args.push(String(fields.length), ...fields);
    bytes += size;
  });
  calls.push({ first, args });
  const refusals: Refusals = new Map();
  await Promise.all(
    calls.map(async (call, n) => {
      const count = (calls[n + 1]?.first ?? entries.length) - call.first;
      try {
        const refused = (await publishScript.run(client, [stream], [...trim, ...call.args])) as unknown[];
        for (let i = 0; i < refused.length; i += 2)
          refusals.set(call.first + Number(refused[i]), new Error(String(refused[i + 1])));
      } catch (error) {
        for (let i = 0; i < count; i++) refusals.set(call.first + i, error);
      }
    }),
  );
  return refusals;
}
