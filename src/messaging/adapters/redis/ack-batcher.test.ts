// AckBatcher without a server: what one go gathers, and who hears what.
import { describe, expect, it } from 'vitest';
import { AckBatcher } from './ack-batcher.ts';

describe('AckBatcher', () => {
  it('sends the acks made in one go in one call, at once (no turn of the event loop); each caller hears only its own refusals', async () => {
    const sent: (readonly string[])[] = [];
    const batcher = new AckBatcher<string>(async (batch) => {
      sent.push(batch);
      return batch.filter((d) => d.startsWith('lost'));
    });
    const [a, b, c] = await Promise.all([
      batcher.add(['a1', 'lost-a']),
      batcher.add(['b1']),
      batcher.add(['lost-c', 'c1']),
    ]);
    expect(sent).toEqual([['a1', 'lost-a', 'b1', 'lost-c', 'c1']]);
    expect([a, b, c]).toEqual([['lost-a'], [], ['lost-c']]);
    expect(await batcher.add(['d'])).toEqual([]);
    expect(sent).toHaveLength(2);
    // Sent before anything of the next turn runs.
    let turned = false;
    setImmediate(() => (turned = true));
    const pending = batcher.add(['e']);
    await Promise.resolve();
    expect(sent).toHaveLength(3);
    expect(turned).toBe(false);
    await pending;
  });

  it('rejects every caller of a failed batch, and sends nothing for an empty ack', async () => {
    let calls = 0;
    const batcher = new AckBatcher<string>(async () => {
      calls++;
      throw new Error('connection lost');
    });
    expect(await batcher.add([])).toEqual([]);
    const results = await Promise.allSettled([batcher.add(['a']), batcher.add(['b'])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(calls).toBe(1);
  });
});
