import { describe, expect, it } from 'vitest';
import { MemoryBroker } from './adapters/memory/index.ts';
import { createEnvelope } from './envelope.ts';
import { withDestinationPrefix } from './prefixed-broker.ts';
import { ManualClock } from '../time/index.ts';

describe('withDestinationPrefix', () => {
  it('publishes, consumes and redrives under the prefixed names, leaving other prefixes alone', async () => {
    const clock = new ManualClock();
    const memory = new MemoryBroker({ clock });
    const blue = withDestinationPrefix(memory, 'blue.');
    const green = withDestinationPrefix(memory, 'green.');
    const message = createEnvelope({ type: 'x.v1', payload: { n: 1 } });
    await blue.publish('orders', [message]);

    expect(memory.depth('blue.orders')).toBe(1);
    expect(memory.depth('orders')).toBe(0);
    expect(await green.source('orders').claim(10)).toEqual([]);
    const [delivery] = await blue.source('orders').claim(10);
    expect(delivery?.envelope.id).toBe(message.id);
  });

  it('dead-letters under the prefix, and redrives back there', async () => {
    const clock = new ManualClock();
    const memory = new MemoryBroker({ clock });
    const blue = withDestinationPrefix(memory, 'blue.');
    await blue.publish('orders', [createEnvelope({ type: 'x.v1', payload: {} })]);
    const source = blue.source('orders');
    const [delivery] = await source.claim(1);
    await source.deadLetter(delivery!, new Error('poison'));
    expect(memory.depth('blue.orders.dead-letter')).toBe(1);

    expect(await blue.redrive('orders.dead-letter')).toBe(1);
    expect(memory.depth('blue.orders')).toBe(1);
  });

  it('refuses a prefix that is no safe name, naming it', () => {
    expect(() => withDestinationPrefix(new MemoryBroker(), 'a b')).toThrow(/prefix/);
  });
});
