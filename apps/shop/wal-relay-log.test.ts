import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../../src/messaging/index.ts';
import type { WalOutboxRelayEvents } from '../../src/outbox/index.ts';
import { TypedEvents, type LifecycleEvents } from '../../src/service/index.ts';
import { ManualClock } from '../../src/time/index.ts';
import { databaseUnreachable } from './test/db-fault.ts';
import { logWalRelayEvents } from './wal-relay-log.ts';

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

const warn = 40;
const debug = 20;

/** A relay's emitter, as the WAL relay's is, and a logger at `level` whose lines land in `lines`. */
function logged(level: string): {
  events: TypedEvents<WalOutboxRelayEvents & LifecycleEvents>;
  lines: LogLine[];
} {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as LogLine);
      done();
    },
  });
  const events = new TypedEvents<WalOutboxRelayEvents & LifecycleEvents>();
  logWalRelayEvents(events, pino({ level }, stream));
  return { events, lines };
}

describe("the shop's log of its WAL relay", () => {
  it('warns of a stop that left the slot held, with the slot and how long it waited', () => {
    const { events, lines } = logged('info');
    events.emit('slot-release', { slotName: 'keel_outbox', outcome: 'timed-out', waitedMs: 5000 });
    expect(lines).toEqual([
      expect.objectContaining({
        level: warn,
        slotName: 'keel_outbox',
        outcome: 'timed-out',
        waitedMs: 5000,
        msg: 'WAL relay stopped with its slot still held: a relay started now may stand by a turn',
      }),
    ]);
  });

  it("warns of a stop whose server could not be asked, with the error's code and message", () => {
    const { events, lines } = logged('info');
    const error = databaseUnreachable();
    events.emit('slot-release', { slotName: 'keel_outbox', outcome: 'unreachable', waitedMs: 12, error });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: warn,
      slotName: 'keel_outbox',
      outcome: 'unreachable',
      waitedMs: 12,
      // pino's serializer adds the causes' messages to the error's own.
      err: { code: 'KEEL_DB_UNAVAILABLE', message: expect.stringContaining(error.message) as string },
    });
    expect(lines[0]!.msg).toMatch(/^WAL relay stopped without knowing whether its slot was let go/);
  });

  it('logs a slot let go at debug only', () => {
    const quiet = logged('info');
    quiet.events.emit('slot-release', { slotName: 'keel_outbox', outcome: 'released', waitedMs: 20 });
    expect(quiet.lines).toEqual([]);

    const verbose = logged('debug');
    verbose.events.emit('slot-release', { slotName: 'keel_outbox', outcome: 'released', waitedMs: 20 });
    expect(verbose.lines).toEqual([
      expect.objectContaining({ level: debug, slotName: 'keel_outbox', outcome: 'released', waitedMs: 20 }),
    ]);
  });

  it('logs its errors and the messages it parks, as before', () => {
    const { events, lines } = logged('info');
    const message = createEnvelope({ type: 'order.placed.v1', payload: {} }, new ManualClock());
    events.emit('error', { error: new Error('stream broke'), during: 'stream' });
    events.emit('parked', { message, error: new Error('rejected by the broker') });
    expect(lines).toEqual([
      expect.objectContaining({
        level: warn,
        during: 'stream',
        err: expect.objectContaining({ message: 'stream broke' }) as unknown,
        msg: 'WAL relay error',
      }),
      expect.objectContaining({
        level: 50,
        messageId: message.id,
        err: expect.objectContaining({ message: 'rejected by the broker' }) as unknown,
        msg: 'WAL relay parked a message (keel outbox retry)',
      }),
    ]);
  });
});
