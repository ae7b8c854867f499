import { describe, expect, it } from 'vitest';
import { MarkQueue } from './outbox-relay-marks.ts';

/** A write that waits until the test lets it finish, failing when told. */
function gatedWrites(): {
  calls: number[][];
  write: (batches: number[]) => Promise<void>;
  finish: (error?: Error) => void;
} {
  const calls: number[][] = [];
  const gates: ((error?: Error) => void)[] = [];
  return {
    calls,
    write: (batches) => {
      calls.push(batches);
      return new Promise<void>((resolve, reject) =>
        gates.push((error) => (error === undefined ? resolve() : reject(error))),
      );
    },
    finish: (error) => gates.shift()?.(error),
  };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('MarkQueue', () => {
  it('writes one mark at a time; batches added while one is in flight go together in the next', async () => {
    const writes = gatedWrites();
    const queue = new MarkQueue<number>(writes.write, () => undefined);
    queue.add(1);
    queue.add(2);
    queue.add(3);
    expect(writes.calls).toEqual([[1]]);
    writes.finish();
    await turn();
    expect(writes.calls).toEqual([[1], [2, 3]]);
    writes.finish();
    expect(await queue.settle()).toEqual([]);
  });

  it('a failed mark keeps its batches: the next add retries them, and settle hands back what is still unmarked', async () => {
    const writes = gatedWrites();
    const errors: unknown[] = [];
    const queue = new MarkQueue<number>(writes.write, (error) => errors.push(error));
    queue.add(1);
    writes.finish(new Error('connection lost'));
    await turn();
    expect(errors).toMatchObject([{ message: 'connection lost' }]);
    queue.add(2);
    expect(writes.calls).toEqual([[1], [1, 2]]);
    writes.finish(new Error('still down'));
    expect(await queue.settle()).toEqual([1, 2]);
    expect(await queue.settle()).toEqual([]);
  });
});
