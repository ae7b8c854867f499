import { EventEmitter } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../time/index.ts';
import { Confirmer, type Outgoing } from './confirm-channel.ts';

type Callback = (error: unknown) => void;

/** A confirm channel that confirms only when the test says so. */
class FakeChannel extends EventEmitter {
  readonly published: { id: string; callback: Callback; corked: boolean }[] = [];
  /** amqplib 2.x keeps its socket as `connection.stream`; this one counts corks. */
  readonly connection = { stream: new FakeSocket() };
  writable = true;
  publish(
    _exchange: string,
    _queue: string,
    _content: Buffer,
    options: { messageId: string },
    callback: Callback,
  ) {
    this.published.push({ id: options.messageId, callback, corked: this.connection.stream.corked > 0 });
    return this.writable;
  }
  async close(): Promise<void> {
    this.emit('close');
  }
}

class FakeSocket {
  corked = 0;
  /** Corked as many times as uncorked, as a socket must end up. */
  uncorks = 0;
  cork(): void {
    this.corked++;
  }
  uncork(): void {
    this.corked--;
    this.uncorks++;
  }
}

function outgoing(...ids: string[]): Outgoing[] {
  return ids.map((id) => ({ id, content: Buffer.from('{}'), options: { messageId: id } }));
}

function setup(): { channel: FakeChannel; clock: ManualClock; confirmer: Confirmer } {
  const channel = new FakeChannel();
  const clock = new ManualClock();
  const confirmer = new Confirmer(channel as unknown as ConfirmChannel, clock, 5000);
  return { channel, clock, confirmer };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Confirmer', () => {
  it('resolves with no failures once every message is confirmed', async () => {
    const { channel, confirmer } = setup();
    const done = confirmer.publish('q', outgoing('a', 'b'));
    await tick();
    for (const p of channel.published) p.callback(null);
    expect(await done).toEqual([]);
  });

  it('names the nacked, the returned-as-unroutable and the lost-with-the-channel messages', async () => {
    const { channel, confirmer } = setup();
    const done = confirmer.publish('q', outgoing('ok', 'nacked', 'returned', 'lost'));
    await tick();
    const [ok, nacked, returned] = channel.published;
    ok!.callback(null);
    nacked!.callback(new Error('message nacked'));
    channel.emit('return', { properties: { messageId: 'returned' } });
    returned!.callback(null);
    channel.emit('close');
    channel.published[3]!.callback(new Error('channel closed'));
    const failures = await done;
    expect(failures.map((f) => f.id).sort()).toEqual(['lost', 'nacked', 'returned']);
    expect(String(failures.find((f) => f.id === 'returned')?.error)).toMatch(/unroutable/);
    expect(await confirmer.publish('q', outgoing('after'))).toEqual([
      { id: 'after', error: new Error('channel closed') },
    ]);
  });

  it('gives up on confirms that never come after the timeout, naming only those', async () => {
    const { channel, clock, confirmer } = setup();
    let settled = false;
    const done = confirmer.publish('q', outgoing('a', 'b', 'c')).finally(() => (settled = true));
    await tick();
    channel.published[1]!.callback(null);
    await clock.advance(4999);
    expect(settled).toBe(false);
    await clock.advance(1);
    const failures = await done;
    expect(failures.map((f) => f.id)).toEqual(['a', 'c']);
    expect(String(failures[0]?.error)).toMatch(/no confirm within 5000 ms/);
    // A late confirm changes nothing.
    channel.published[0]!.callback(null);
  });

  it('waits for the socket to drain before writing more', async () => {
    const { channel, confirmer } = setup();
    channel.writable = false;
    const done = confirmer.publish('q', outgoing('a', 'b'));
    await tick();
    expect(channel.published.map((p) => p.id)).toEqual(['a']);
    channel.writable = true;
    channel.emit('drain');
    await tick();
    expect(channel.published.map((p) => p.id)).toEqual(['a', 'b']);
    for (const p of channel.published) p.callback(null);
    expect(await done).toEqual([]);
  });

  it('writes a big batch a slice of 128 at a time, each corked on the socket until the next turn', async () => {
    const { channel, confirmer } = setup();
    const socket = channel.connection.stream;
    const ids = Array.from({ length: 300 }, (_, n) => `m${n}`);
    const done = confirmer.publish('q', outgoing(...ids));
    // The first slice goes at once, corked; the rest waits for the socket to take it.
    expect(channel.published).toHaveLength(128);
    expect(channel.published.every((p) => p.corked)).toBe(true);
    await tick();
    expect(socket.corked).toBe(1);
    await tick();
    // Uncorked after amqplib's muxer had its turn; the next slice follows, corked again.
    expect(socket.uncorks).toBe(1);
    expect(channel.published).toHaveLength(256);
    for (let turn = 0; turn < 6; turn++) await tick();
    expect(channel.published.map((p) => p.id)).toEqual(ids);
    expect(socket.corked).toBe(0);
    expect(socket.uncorks).toBe(3);
    for (const p of channel.published) p.callback(null);
    expect(await done).toEqual([]);
  });

  it('publishes running at once share the slice: a per-key publish writes 128 per turn in all', async () => {
    const { channel, confirmer } = setup();
    const socket = channel.connection.stream;
    const a = Array.from({ length: 100 }, (_, n) => `a${n}`);
    const b = Array.from({ length: 100 }, (_, n) => `b${n}`);
    const done = Promise.all([
      confirmer.publish('p0', outgoing(...a)),
      confirmer.publish('p1', outgoing(...b)),
    ]);
    // a's 100 and the first 28 of b's, then the rest of b after the flush.
    expect(channel.published).toHaveLength(128);
    await tick();
    await tick();
    expect(socket.uncorks).toBe(1);
    expect(channel.published).toHaveLength(200);
    expect(channel.published.map((p) => p.id)).toEqual([...a, ...b]);
    for (const p of channel.published) p.callback(null);
    expect(await done).toEqual([[], []]);
    for (let turn = 0; turn < 4; turn++) await tick();
    expect(socket.corked).toBe(0);
  });

  it('leaves the socket uncorked when the channel closes in the middle of a batch', async () => {
    const { channel, confirmer } = setup();
    const ids = Array.from({ length: 200 }, (_, n) => `m${n}`);
    const done = confirmer.publish('q', outgoing(...ids));
    channel.emit('close');
    for (const p of channel.published) p.callback(new Error('channel closed'));
    const failures = await done;
    expect(failures).toHaveLength(200);
    expect(channel.published).toHaveLength(128);
    for (let turn = 0; turn < 4; turn++) await tick();
    expect(channel.connection.stream.corked).toBe(0);
  });
});
