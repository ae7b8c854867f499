import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

// uuid's own generator asks the operating system for 16 random bytes per id
// (crypto.getRandomValues), which cost more than the rest of making the id; keel mints one for
// every message and order. Drawing them from a pooled buffer, refilled 256 ids at a time, is what
// node's own randomUUID does.
const pool = new Uint8Array(4096);
let next = pool.length;

/**
 * A UUIDv7 whose timestamp is `msecs` (a Clock's now), so ids sort by the time they were made
 * at; ids of one millisecond are in random order. The layout and the formatting are uuid's.
 */
export function uuidv7At(msecs: number): string {
  if (next + 16 > pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  const random = pool.subarray(next, next + 16);
  next += 16;
  return v7({ msecs, random });
}
