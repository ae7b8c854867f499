import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { sendNow } from './send-now.ts';

/**
 * A Lua script run atomically on the server: EVALSHA, falling back to EVAL once after NOSCRIPT
 * (first use, or a restarted server lost its script cache).
 */
export class LuaScript {
  readonly #source: string;
  readonly #sha: string;
  constructor(source: string) {
    this.#source = source;
    this.#sha = createHash('sha1').update(source).digest('hex');
  }

  /** `now`: sent at once, outside the client's auto-pipelining (see `sendNow`). */
  async run(
    client: Redis,
    keys: readonly string[],
    args: readonly (string | number)[],
    now = false,
  ): Promise<unknown> {
    try {
      return await (now
        ? sendNow(client, 'evalsha', [this.#sha, keys.length, ...keys, ...args])
        : client.evalsha(this.#sha, keys.length, ...keys, ...args));
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error;
      return now
        ? sendNow(client, 'eval', [this.#source, keys.length, ...keys, ...args])
        : client.eval(this.#source, keys.length, ...keys, ...args);
    }
  }

  /**
   * EVAL, sent at once: the source travels with every call (Redis finds it compiled in its cache
   * by its hash), so a call never fails NOSCRIPT. For calls sent back to back that must take
   * effect in order: with `run`, after a script flush each would fail NOSCRIPT and be sent again
   * one by one, and another client loading the script in between could let a later call run
   * before an earlier one's second try.
   */
  evalNow(client: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return sendNow(client, 'eval', [this.#source, keys.length, ...keys, ...args]);
  }
}

// XADD with the destination's retention, if any: `kind` is '' | 'MAXLEN' | 'MINID'. Approximate
// (`~`) trimming: Redis drops whole nodes, cheaply, so a stream keeps a little more than asked.
const add = `
local function add(stream, kind, threshold, fields)
  if kind ~= '' then
    return redis.call('XADD', stream, kind, '~', threshold, '*', unpack(fields))
  end
  return redis.call('XADD', stream, '*', unpack(fields))
end
`;

const field = `
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
`;

// Per-key ordering: the lock hash maps a key to the id of the one message of that key that may
// be delivered (it keeps the lock across retries and takeovers). Entries of a locked key wait,
// in order, in a list per key. When the holder is acknowledged or dead-lettered, the next waiting
// entry takes the lock and goes to the group's retry stream, ready at once.
const handover = `
local function handover(lockHash, retryStream, prefix, key, message)
  if key == '' or redis.call('HGET', lockHash, key) ~= message then return 0 end
  local nextEntry = redis.call('LPOP', prefix .. key)
  if not nextEntry then
    redis.call('HDEL', lockHash, key)
    return 0
  end
  local fields = cjson.decode(nextEntry)
  redis.call('HSET', lockHash, key, field(fields, 'id'))
  redis.call('XADD', retryStream, '*', unpack(fields))
  return 1
end
`;

// The caller still holds the entry: it is pending for this consumer with the delivery count the
// caller saw. Otherwise its lease expired and another consumer (or a later claim) took it over,
// and settling it here would settle someone else's delivery.
const holds = `
local function holds(stream, group, consumer, id, count)
  local p = redis.call('XPENDING', stream, group, id, id, 1)[1]
  return p ~= nil and p[2] == consumer and tostring(p[4]) == count
end
`;

/**
 * The full claim, in one round trip, for one consumer:
 * 1. moves due delayed publishes into the stream and due retries into the group's retry stream;
 * 2. when ARGV[9] is '1', takes over entries whose lease expired (pending and idle longer than
 *    `leaseMs`: their consumer crashed, stalled or released them), retry stream first;
 * 3. reads new entries, retry stream first.
 * With per-key ordering (ARGV[10] '1'), an entry whose key is locked by another message is
 * acknowledged and appended to the key's waiting list instead of being returned, and reading
 * goes on (up to 10 reads) until `max` entries are found or the streams are exhausted.
 *
 * Returns `{entries, nextDelayed, nextRetry, more}`: each entry `{which, id, deliveryCount,
 * fields}` with `which` 'r' (retry stream) or 'm' (main); the earliest due time left in each
 * sorted set ('' when empty); `more` 1 when the retry stream or the lease scan may hold more,
 * so the next claim should be a full one too.
 *
 * Each entry taken over is added ('m' | 'r' and its id) to its previous holder's taken set (see
 * `ackScript`).
 *
 * KEYS: stream, retry stream, delayed, retry-delayed, key locks.
 * ARGV: group, consumer, max, leaseMs, now, promoteLimit, trimKind, trimValue, reclaim, perKey,
 *       waiting-list prefix, taken-set prefix.
 */
export const claimScript = new LuaScript(
  add +
    field +
    `
local group, me, max, lease, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local perKey = ARGV[10] == '1'
local more = 0
local function promote(zset, stream, kind, threshold)
  local due = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)
  if #due == 0 then return 0 end
  for _, member in ipairs(due) do add(stream, kind, threshold, cjson.decode(member)) end
  redis.call('ZREM', zset, unpack(due))
  return #due
end
local function earliest(zset)
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if #first == 0 then return '' end
  return first[2]
end
-- true: deliver it; false: it waits behind the message that holds its key.
local function admit(which, stream, id, fields)
  if not perKey then return true end
  local key = field(fields, 'key')
  if not key then return true end
  local message = field(fields, 'id')
  local holder = redis.call('HGET', KEYS[5], key)
  if not holder then
    redis.call('HSET', KEYS[5], key, message)
    return true
  end
  if holder == message then return true end
  redis.call('RPUSH', ARGV[11] .. key, cjson.encode(fields))
  redis.call('XACK', stream, group, id)
  if which == 'r' then redis.call('XDEL', stream, id) end
  return false
end
promote(KEYS[3], KEYS[1], ARGV[7], ARGV[8])
if promote(KEYS[4], KEYS[2], '', '') > 0 then more = 1 end
local out = {}
local function reclaim(which, stream)
  if #out >= max or ARGV[9] ~= '1' then return end
  local idle = redis.call('XPENDING', stream, group, 'IDLE', lease, '-', '+', max - #out)
  if #idle == 0 then return end
  more = 1
  local ids, counts, holders = {}, {}, {}
  for i, p in ipairs(idle) do ids[i] = p[1]; counts[p[1]] = p[4]; holders[p[1]] = p[2] end
  for _, e in ipairs(redis.call('XCLAIM', stream, group, me, lease, unpack(ids))) do
    if e and e[2] then
      -- The previous holder's delivery is superseded (this consumer's own too): its acks are checked.
      redis.call('SADD', ARGV[12] .. holders[e[1]], which .. e[1])
      if admit(which, stream, e[1], e[2]) then out[#out + 1] = {which, e[1], counts[e[1]] + 1, e[2]} end
    end
  end
end
local function read(which, stream)
  for _ = 1, 10 do
    if #out >= max then return end
    local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', max - #out, 'STREAMS', stream, '>')
    if not r then return end
    if which == 'r' then more = 1 end
    for _, e in ipairs(r[1][2]) do
      if admit(which, stream, e[1], e[2]) then out[#out + 1] = {which, e[1], 1, e[2]} end
    end
    if not perKey then return end
  end
  more = 1
end
reclaim('r', KEYS[2])
reclaim('m', KEYS[1])
read('r', KEYS[2])
read('m', KEYS[1])
return {out, earliest(KEYS[3]), earliest(KEYS[4]), more}
`,
);

/**
 * Acknowledges the deliveries this consumer still holds, in one round trip: an entry is
 * acknowledged only if it is pending for this consumer with the delivery count the caller
 * claimed (the lease token). One whose lease ran out and that another consumer took over (or
 * that this consumer took again since) is left to its holder and reported. One pending for
 * nobody any more (this ack re-sent after a lost reply, or the taker done with it) is not
 * reported: no one holds it, so there is nothing to fence. Retry copies are deleted once
 * acknowledged.
 *
 * The check costs a read of this consumer's pending entries (no more than it holds, bounded by
 * its runtime's `concurrency + prefetch`), so it runs only when needed: an entry changes hands
 * (or delivery count) only through the claim script's takeover, which adds it to the previous
 * holder's taken set. While this consumer's set is empty, every entry it acks is still its own
 * as claimed, and the batch is one XACK of the ids as they came. Refused entries leave the set
 * (as do those the heartbeat finds lost, and the whole set when the consumer closes).
 *
 * KEYS: stream, retry stream, this consumer's taken set.
 * ARGV: group, consumer, m (deliveries from the stream), the delivery counts joined by ',' (''
 *       when every one is 1, as after a first read), then the entry ids (the m of the stream
 *       first).
 * Returns the 0-based positions of the deliveries not acknowledged.
 */
export const ackScript = new LuaScript(`
local group, me, m = ARGV[1], ARGV[2], tonumber(ARGV[3])
local first = 5
local checked = redis.call('EXISTS', KEYS[3]) == 1
local counts = {}
if checked then
  for count in string.gmatch(ARGV[4], '%d+') do counts[#counts + 1] = tonumber(count) end
end
local refused = {}
local function settle(which, stream, from, to, delete)
  if from > to then return end
  local ids = {}
  if checked then
    local held = {}
    for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 1000000000, me)) do
      held[p[1]] = p[4]
    end
    for i = from, to do
      local count = held[ARGV[i]]
      if count ~= nil and count == (counts[i - first + 1] or 1) then
        ids[#ids + 1] = ARGV[i]
      else
        redis.call('SREM', KEYS[3], which .. ARGV[i])
        if redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)[1] ~= nil then
          refused[#refused + 1] = i - first
        end
      end
    end
  else
    -- Straight from ARGV; unpack is bounded by Lua's stack: a thousand ids per call.
    for i = from, to, 1000 do
      local last = math.min(i + 999, to)
      redis.call('XACK', stream, group, unpack(ARGV, i, last))
      if delete then redis.call('XDEL', stream, unpack(ARGV, i, last)) end
    end
    return
  end
  for i = 1, #ids, 1000 do
    local last = math.min(i + 999, #ids)
    redis.call('XACK', stream, group, unpack(ids, i, last))
    if delete then redis.call('XDEL', stream, unpack(ids, i, last)) end
  end
end
settle('m', KEYS[1], first, first - 1 + m, false)
settle('r', KEYS[2], first + m, #ARGV, true)
return refused
`);

/**
 * Acknowledges deliveries of keyed messages under per-key ordering, fenced like `ackScript`:
 * for each delivery this consumer still holds, XACK (and XDEL for retry copies), then hands its
 * key to the next waiting entry. One it no longer holds is left alone (its key stays with its
 * holder) and reported, unless it is pending for nobody any more (see `ackScript`).
 *
 * KEYS: stream, retry stream, key locks. ARGV: group, consumer, waiting-list prefix, then per
 * delivery: which ('m' | 'r'), entry id, delivery count, key, message id.
 * Returns `{handed, refused}`: how many keys were handed over, and the 0-based positions of the
 * deliveries not acknowledged.
 */
export const ackKeyedScript = new LuaScript(
  holds +
    field +
    handover +
    `
local handed, refused = 0, {}
for i = 4, #ARGV, 5 do
  local stream = KEYS[1]
  if ARGV[i] == 'r' then stream = KEYS[2] end
  if holds(stream, ARGV[1], ARGV[2], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XACK', stream, ARGV[1], ARGV[i + 1])
    if ARGV[i] == 'r' then redis.call('XDEL', stream, ARGV[i + 1]) end
    handed = handed + handover(KEYS[3], KEYS[2], ARGV[3], ARGV[i + 3], ARGV[i + 4])
  elseif redis.call('XPENDING', stream, ARGV[1], ARGV[i + 1], ARGV[i + 1], 1)[1] ~= nil then
    refused[#refused + 1] = (i - 4) / 5
  end
end
return {handed, refused}
`,
);

/**
 * Stores a failed delivery's copy for its delay, then acknowledges the entry, atomically: the
 * message is always in exactly one place. Returns 0 when the lease was lost (nothing done).
 *
 * KEYS: the stream the delivery came from, the group's retry-delayed set.
 * ARGV: group, consumer, entry id, delivery count, due, copy (JSON fields), delete ('1' for retry streams).
 */
export const retryScript = new LuaScript(
  holds +
    `
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
if ARGV[7] == '1' then redis.call('XDEL', KEYS[1], ARGV[3]) end
return 1
`,
);

/**
 * Appends a delivery to the dead-letter stream and acknowledges it, atomically; under per-key
 * ordering, hands its key to the next waiting entry. Returns 0 when the lease was lost.
 *
 * KEYS: the stream the delivery came from, the dead-letter stream, key locks, the group's retry stream.
 * ARGV: group, consumer, entry id, delivery count, delete ('1' for retry streams), wake channel,
 *       key ('' for none or without per-key ordering), message id, waiting-list prefix,
 *       then the dead letter's fields.
 */
export const deadLetterScript = new LuaScript(
  holds +
    field +
    handover +
    `
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 10))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
if ARGV[5] == '1' then redis.call('XDEL', KEYS[1], ARGV[3]) end
redis.call('PUBLISH', ARGV[6], '')
return 1 + handover(KEYS[3], KEYS[4], ARGV[9], ARGV[7], ARGV[8])
`,
);

/**
 * Hands a delivery back without counting it: it stays pending, its delivery count goes back by
 * one and its last delivery time to 0, so the next claim of any consumer of the group takes it
 * over at once (its idle time exceeds every lease). It keeps its place in the stream.
 *
 * KEYS: the stream the delivery came from. ARGV: group, consumer, entry id, delivery count, wake channel.
 */
export const releaseScript = new LuaScript(
  holds +
    `
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'TIME', 0, 'RETRYCOUNT', tonumber(ARGV[4]) - 1, 'JUSTID')
redis.call('PUBLISH', ARGV[5], 'release')
return 1
`,
);

/**
 * Renews leases, the heartbeat of the consumer runtime: for each entry this consumer still holds
 * with the delivery count it claimed, XCLAIM ... JUSTID to itself resets its idle time (the lease
 * the claim script's XPENDING IDLE measures) without counting a delivery. Entries it no longer
 * holds are left alone and reported.
 *
 * KEYS: stream, retry stream, this consumer's taken set (the lost leave it: see `ackScript`).
 * ARGV: group, consumer, then per entry: 'm' | 'r', entry id, delivery count.
 * Returns the 0-based positions of the entries no longer held.
 */
export const extendScript = new LuaScript(
  holds +
    `
local lost = {}
for i = 3, #ARGV, 3 do
  local stream = KEYS[1]
  if ARGV[i] == 'r' then stream = KEYS[2] end
  if holds(stream, ARGV[1], ARGV[2], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XCLAIM', stream, ARGV[1], ARGV[2], 0, ARGV[i + 1], 'JUSTID')
  else
    redis.call('SREM', KEYS[3], ARGV[i] .. ARGV[i + 1])
    lost[#lost + 1] = (i - 3) / 3
  end
end
return lost
`,
);

/**
 * Removes consumers that hold nothing: this one, and any idle longer than ARGV[3] ms (a crashed
 * process whose entries others took over). A consumer with pending entries is never removed:
 * XGROUP DELCONSUMER would drop its pending entries, and with them the messages.
 *
 * Deletes this consumer's taken set (see `ackScript`; a closed consumer acks nothing more), and
 * the taken set of each consumer removed.
 *
 * KEYS: streams of the group. ARGV: group, consumer, idle threshold ms, taken-set prefix.
 */
export const forgetConsumerScript = new LuaScript(`
redis.call('DEL', ARGV[4] .. ARGV[2])
local removed = 0
for _, stream in ipairs(KEYS) do
  if redis.call('EXISTS', stream) == 1 then
    local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, ARGV[1])
    if ok then
      for _, c in ipairs(consumers) do
        local info = {}
        for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
        if info['pending'] == 0 and (info['name'] == ARGV[2] or info['idle'] > tonumber(ARGV[3])) then
          redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[1], info['name'])
          redis.call('DEL', ARGV[4] .. info['name'])
          removed = removed + 1
        end
      end
    end
  end
end
return removed
`);

/**
 * Moves one dead letter to its destination, once: only the caller whose XDEL removed it appends
 * it, so two concurrent redrives never duplicate it.
 *
 * KEYS: dead-letter stream, target stream. ARGV: entry id, wake channel, trimKind, trimValue, fields...
 */
export const redriveScript = new LuaScript(
  add +
    `
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
add(KEYS[2], ARGV[3], ARGV[4], {unpack(ARGV, 5)})
redis.call('PUBLISH', ARGV[2], '')
return 1
`,
);

/**
 * Per-key ordering repair: hands on every key whose lock holder is nowhere any more (not pending
 * in the stream or the retry stream, not in the retry stream, not waiting for a retry delay),
 * as happens when retention trimmed a pending entry or keys were deleted by hand. Atomic, and
 * O(pending + retries): an operator's tool, not a hot path. Returns the number of keys repaired.
 *
 * KEYS: stream, retry stream, retry-delayed, key locks. ARGV: group, waiting-list prefix.
 */
export const repairKeyLocksScript = new LuaScript(
  field +
    handover +
    `
local live = {}
for _, stream in ipairs({KEYS[1], KEYS[2]}) do
  local ok, pending = pcall(redis.call, 'XPENDING', stream, ARGV[1], '-', '+', 1000000000)
  if ok then
    for _, p in ipairs(pending) do
      local e = redis.call('XRANGE', stream, p[1], p[1])[1]
      if e then live[field(e[2], 'id')] = true end
    end
  end
end
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do live[field(e[2], 'id')] = true end
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  live[field(cjson.decode(member), 'id')] = true
end
local repaired = 0
local locks = redis.call('HGETALL', KEYS[4])
for i = 1, #locks, 2 do
  if not live[locks[i + 1]] then
    handover(KEYS[4], KEYS[2], ARGV[2], locks[i], locks[i + 1])
    repaired = repaired + 1
  end
end
return repaired
`,
);

/**
 * A publish of many entries as one command: an XADD per entry, run on the server. Pipelining
 * an XADD per message cost the client a command, a promise and a reply to parse per message,
 * which made the client the bottleneck of a batch (~14 µs of CPU per message against ~5 this
 * way); the server's work is the same XADDs.
 *
 * An entry Redis refuses does not stop the rest; its index (0-based, in the call) and error come
 * back: `{i, error, i, error, ...}`, empty when every entry was added.
 *
 * KEYS: stream. ARGV: trimKind ('' | 'MAXLEN' | 'MINID'), trimValue, then per entry its number
 * of field names and values, and those.
 */
export const publishScript = new LuaScript(`
local kind, threshold = ARGV[1], ARGV[2]
local refused = {}
local at, index = 3, 0
while at <= #ARGV do
  local count = tonumber(ARGV[at])
  local reply
  if kind ~= '' then
    reply = redis.pcall('XADD', KEYS[1], kind, '~', threshold, '*', unpack(ARGV, at + 1, at + count))
  else
    reply = redis.pcall('XADD', KEYS[1], '*', unpack(ARGV, at + 1, at + count))
  end
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = index
    refused[#refused + 1] = reply.err
  end
  at = at + 1 + count
  index = index + 1
end
return refused
`);
