import type { Message } from 'amqplib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../time/index.ts';
import { ChannelAcks, type AckChannel } from './channel-acks.ts';
import { propertyRuns } from '../../../testing/property-runs.ts';

type Frame =
  { kind: 'ack'; tag: number; multiple: boolean } | { kind: 'nack'; tag: number; requeue: boolean };

/**
 * A channel that settles as RabbitMQ does: it knows which tags it delivered and which are still
 * unsettled, refuses a settle of an unknown tag (the server closes the channel with
 * PRECONDITION_FAILED), and applies `multiple` to every unsettled tag up to the one named.
 */
class ServerModel implements AckChannel {
  readonly frames: Frame[] = [];
  readonly unsettled = new Set<number>();
  readonly acked = new Set<number>();
  readonly nacked = new Set<number>();
  #next = 1;

  deliver(): Message {
    const tag = this.#next++;
    this.unsettled.add(tag);
    return message(tag);
  }

  ack(message: Message, allUpTo = false): void {
    const tag = message.fields.deliveryTag;
    this.frames.push({ kind: 'ack', tag, multiple: allUpTo });
    this.#settle(tag, allUpTo, this.acked);
  }

  nack(message: Message, allUpTo = false, requeue = true): void {
    const tag = message.fields.deliveryTag;
    this.frames.push({ kind: 'nack', tag, requeue });
    this.#settle(tag, allUpTo, this.nacked);
  }

  #settle(tag: number, multiple: boolean, into: Set<number>): void {
    if (!this.unsettled.has(tag)) throw new Error(`PRECONDITION_FAILED - unknown delivery tag ${tag}`);
    const covered = multiple ? [...this.unsettled].filter((t) => t <= tag) : [tag];
    for (const t of covered) {
      this.unsettled.delete(t);
      into.add(t);
    }
  }
}

function message(tag: number): Message {
  return { fields: { deliveryTag: tag } } as unknown as Message;
}

/** ChannelAcks over a server model: the tick ends when the test says, hold timers on a manual clock. */
function setup(holdLimit = 0): {
  server: ServerModel;
  acks: ChannelAcks;
  clock: ManualClock;
  endOfTick: () => void;
} {
  const server = new ServerModel();
  const clock = new ManualClock();
  const scheduled: (() => void)[] = [];
  const acks = new ChannelAcks(server, { clock, holdMs: 20, schedule: (flush) => scheduled.push(flush) });
  acks.holdLimit = holdLimit;
  return { server, acks, clock, endOfTick: () => scheduled.splice(0).forEach((flush) => flush()) };
}

function receive(server: ServerModel, acks: ChannelAcks, count: number): Message[] {
  return Array.from({ length: count }, () => {
    const m = server.deliver();
    acks.delivered(m);
    return m;
  });
}

describe('ChannelAcks', () => {
  it('writes the acks of a tick as one multiple ack when they are the head of the unsettled ones', () => {
    const { server, acks, endOfTick } = setup();
    const ms = receive(server, acks, 5);
    for (const m of [ms[2]!, ms[0]!, ms[1]!, ms[4]!, ms[3]!]) acks.ack(m);
    expect(server.frames).toEqual([]);
    endOfTick();
    expect(server.frames).toEqual([{ kind: 'ack', tag: 5, multiple: true }]);
    expect(server.unsettled.size).toBe(0);
    expect(acks.unsettled).toBe(0);
  });

  it('never lets a multiple ack cover an unsettled delivery: acks behind it go one by one', () => {
    const { server, acks, endOfTick } = setup();
    const ms = receive(server, acks, 6);
    // 3 is slow; 1, 2, 4, 6 are done.
    for (const m of [ms[0]!, ms[1]!, ms[3]!, ms[5]!]) acks.ack(m);
    endOfTick();
    expect(server.frames).toEqual([
      { kind: 'ack', tag: 2, multiple: true },
      { kind: 'ack', tag: 4, multiple: false },
      { kind: 'ack', tag: 6, multiple: false },
    ]);
    expect([...server.unsettled]).toEqual([3, 5]);
    // 5, then 3, finish: only they are left, so a run again.
    acks.ack(ms[4]!);
    acks.ack(ms[2]!);
    endOfTick();
    expect(server.frames.at(-1)).toEqual({ kind: 'ack', tag: 5, multiple: true });
    expect(server.unsettled.size).toBe(0);
    expect(server.nacked.size).toBe(0);
  });

  it('writes a nack at once, for its delivery alone, and the run after it skips it', () => {
    const { server, acks, endOfTick } = setup();
    const ms = receive(server, acks, 4);
    acks.ack(ms[0]!);
    acks.nack(ms[1]!, true);
    expect(server.frames).toEqual([{ kind: 'nack', tag: 2, requeue: true }]);
    acks.ack(ms[3]!);
    acks.ack(ms[2]!);
    endOfTick();
    expect(server.frames.slice(1)).toEqual([{ kind: 'ack', tag: 4, multiple: true }]);
    expect([...server.acked].sort()).toEqual([1, 3, 4]);
    expect([...server.nacked]).toEqual([2]);
  });

  it('settles a delivery once: a second ack or a nack after an ack writes nothing', () => {
    const { server, acks, endOfTick } = setup();
    const [m] = receive(server, acks, 1);
    acks.ack(m!);
    acks.ack(m!);
    acks.nack(m!, true);
    endOfTick();
    acks.ack(m!);
    endOfTick();
    expect(server.frames).toEqual([{ kind: 'ack', tag: 1, multiple: false }]);
  });

  it('a tag skipped (a basic.get answered on the channel, reported late) stops runs until it is settled', () => {
    const { server, acks, endOfTick } = setup();
    const [first] = receive(server, acks, 1);
    const got = server.deliver(); // tag 2: a basic.get whose caller has not resumed yet
    const later = receive(server, acks, 2); // tags 3, 4
    for (const m of [first!, ...later]) acks.ack(m);
    endOfTick();
    // 2 is unknown here but unsettled on the server: the run stops before it.
    expect(server.frames).toEqual([
      { kind: 'ack', tag: 1, multiple: false },
      { kind: 'ack', tag: 3, multiple: false },
      { kind: 'ack', tag: 4, multiple: false },
    ]);
    acks.delivered(got); // the caller resumes
    expect(acks.unsettled).toBe(1);
    const more = receive(server, acks, 2); // 5, 6
    for (const m of more) acks.ack(m);
    acks.ack(got);
    endOfTick();
    expect(server.frames.slice(3)).toEqual([{ kind: 'ack', tag: 6, multiple: true }]);
    expect(server.unsettled.size).toBe(0);
    expect(acks.exact).toBe(true);
  });

  it('a delivery settled without being reported is known from then on', () => {
    const { server, acks, endOfTick } = setup();
    const got = server.deliver(); // tag 1, never reported
    acks.ack(got);
    const [next] = receive(server, acks, 1);
    acks.ack(next!);
    endOfTick();
    expect(server.frames).toEqual([{ kind: 'ack', tag: 2, multiple: true }]);
    expect(server.unsettled.size).toBe(0);
  });

  it('gives up runs after a gap of more than 1 024 tags, writing each ack alone', () => {
    const { server, acks, endOfTick } = setup();
    const [first] = receive(server, acks, 1);
    acks.ack(first!);
    for (let n = 0; n < 1025; n++) server.deliver();
    const [far] = receive(server, acks, 1);
    expect(acks.exact).toBe(false);
    expect(server.frames).toEqual([{ kind: 'ack', tag: 1, multiple: false }]);
    acks.ack(far!);
    expect(server.frames.at(-1)).toEqual({ kind: 'ack', tag: 1027, multiple: false });
    endOfTick();
    expect(server.unsettled.size).toBe(1025);
  });

  it('after the channel closed, forgets everything and writes nothing', () => {
    const { server, acks, endOfTick } = setup();
    const ms = receive(server, acks, 2);
    acks.ack(ms[0]!);
    acks.discard();
    acks.ack(ms[1]!);
    acks.nack(ms[1]!, true);
    endOfTick();
    expect(server.frames).toEqual([]);
    expect(acks.unsettled).toBe(0);
  });

  it('flush writes what is pending at once (before a close)', () => {
    const { server, acks } = setup();
    const ms = receive(server, acks, 3);
    acks.ack(ms[0]!);
    acks.ack(ms[1]!);
    acks.flush();
    expect(server.frames).toEqual([{ kind: 'ack', tag: 2, multiple: true }]);
  });

  it('holds acks behind a slower handler until it is done, then writes them in its run', () => {
    const { server, acks, clock, endOfTick } = setup(8);
    const ms = receive(server, acks, 6);
    for (const m of [ms[0]!, ms[2]!, ms[3]!, ms[4]!]) acks.ack(m);
    endOfTick();
    // 2 is still running: the run stops before it, 3-5 wait.
    expect(server.frames).toEqual([{ kind: 'ack', tag: 1, multiple: false }]);
    expect(acks.pending).toBe(3);
    expect(clock.pendingTimers).toBe(1);
    acks.ack(ms[1]!);
    endOfTick();
    expect(server.frames.slice(1)).toEqual([{ kind: 'ack', tag: 5, multiple: true }]);
    expect([...server.unsettled]).toEqual([6]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('writes held acks one by one after holdMs, or at once past holdLimit', async () => {
    const { server, acks, clock, endOfTick } = setup(2);
    const ms = receive(server, acks, 6);
    acks.ack(ms[1]!);
    acks.ack(ms[2]!);
    endOfTick();
    expect(server.frames).toEqual([]);
    await clock.advance(19);
    expect(server.frames).toEqual([]);
    await clock.advance(1);
    expect(server.frames).toEqual([
      { kind: 'ack', tag: 2, multiple: false },
      { kind: 'ack', tag: 3, multiple: false },
    ]);
    // Three behind the gap is past the limit of two: no wait.
    for (const m of ms.slice(3)) acks.ack(m);
    endOfTick();
    expect(server.frames.slice(2).map((f) => f.tag)).toEqual([4, 5, 6]);
    expect([...server.unsettled]).toEqual([1]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a nack that closes the gap lets the held acks go in a run', () => {
    const { server, acks, clock, endOfTick } = setup(8);
    const ms = receive(server, acks, 4);
    for (const m of ms.slice(1)) acks.ack(m);
    endOfTick();
    expect(server.frames).toEqual([]);
    acks.nack(ms[0]!, false);
    endOfTick();
    expect(server.frames).toEqual([
      { kind: 'nack', tag: 1, requeue: false },
      { kind: 'ack', tag: 4, multiple: true },
    ]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('flush (before a close) writes held acks too, and discard stops the hold timer', () => {
    const { server, acks, clock, endOfTick } = setup(8);
    const ms = receive(server, acks, 3);
    acks.ack(ms[2]!);
    endOfTick();
    expect(clock.pendingTimers).toBe(1);
    acks.flush();
    expect(server.frames).toEqual([{ kind: 'ack', tag: 3, multiple: false }]);
    expect(clock.pendingTimers).toBe(0);
    acks.ack(ms[1]!);
    endOfTick();
    expect(clock.pendingTimers).toBe(1);
    acks.discard();
    expect(clock.pendingTimers).toBe(0);
  });

  it('property: whatever the order of deliveries (some reported late), acks, nacks, ticks and waits, the server acks exactly what was acked', async () => {
    // Each step: deliver one, ack or nack an unsettled delivery (picked by index), or end the tick.
    // `get`: a delivery reported late (a basic.get) or never; `report`: one of those reported.
    const step = fc.oneof(
      fc.constant({ op: 'deliver' as const }),
      fc.constant({ op: 'get' as const }),
      fc.record({ op: fc.constant('report' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('ack' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('nack' as const), pick: fc.nat(), requeue: fc.boolean() }),
      fc.constant({ op: 'tick' as const }),
      fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 30 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 300 }), fc.nat(12), async (steps, holdLimit) => {
        const { server, acks, clock, endOfTick } = setup(holdLimit);
        const open: Message[] = [];
        const unreported: Message[] = [];
        const wantAcked = new Set<number>();
        const wantNacked = new Set<number>();
        for (const s of steps) {
          if (s.op === 'deliver') open.push(...receive(server, acks, 1));
          else if (s.op === 'get') {
            const m = server.deliver();
            unreported.push(m);
            open.push(m);
          } else if (s.op === 'report') {
            if (unreported.length > 0) acks.delivered(unreported.splice(s.pick % unreported.length, 1)[0]!);
          } else if (s.op === 'tick') endOfTick();
          else if (s.op === 'wait') await clock.advance(s.ms);
          else if (open.length > 0) {
            const [m] = open.splice(s.pick % open.length, 1);
            const tag = m!.fields.deliveryTag;
            const at = unreported.indexOf(m!);
            if (at >= 0) unreported.splice(at, 1); // settled by its caller without a report
            if (s.op === 'ack') {
              acks.ack(m!);
              wantAcked.add(tag);
            } else {
              acks.nack(m!, s.requeue);
              wantNacked.add(tag);
            }
          }
          // Never ahead of the client: nothing it has not settled is settled on the server.
          for (const t of server.acked) expect(wantAcked.has(t)).toBe(true);
          for (const t of server.nacked) expect(wantNacked.has(t)).toBe(true);
        }
        // What a close writes first.
        acks.flush();
        expect(clock.pendingTimers).toBe(0);
        expect([...server.acked].sort((a, b) => a - b)).toEqual([...wantAcked].sort((a, b) => a - b));
        expect([...server.nacked].sort((a, b) => a - b)).toEqual([...wantNacked].sort((a, b) => a - b));
        expect([...server.unsettled].sort((a, b) => a - b)).toEqual(
          open.map((m) => m.fields.deliveryTag).sort((a, b) => a - b),
        );
        // Gets never reported after the last delivery seen are unknown to it, and that is fine.
        expect(acks.unsettled).toBeLessThanOrEqual(open.length);
        expect(acks.unsettled).toBeGreaterThanOrEqual(open.length - unreported.length);
        expect(acks.exact).toBe(true);
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});
