import { describe, expect, it } from 'vitest';
import { WriteCoalescer } from './write-coalescer.ts';

function fakeSocket(): { cork(): void; uncork(): void; log: string[] } {
  const log: string[] = [];
  return { log, cork: () => log.push('cork'), uncork: () => log.push('uncork') };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('WriteCoalescer', () => {
  it('corks once for every write of a turn, including those after awaits of resolved promises', async () => {
    const socket = fakeSocket();
    const writes = new WriteCoalescer(socket);
    writes.hold();
    await Promise.resolve();
    writes.hold();
    await Promise.resolve().then(() => writes.hold());
    expect(socket.log).toEqual(['cork']);
    await nextTurn();
    expect(socket.log).toEqual(['cork', 'uncork']);
  });

  it('corks again in a later turn', async () => {
    const socket = fakeSocket();
    const writes = new WriteCoalescer(socket);
    writes.hold();
    await nextTurn();
    writes.hold();
    await nextTurn();
    expect(socket.log).toEqual(['cork', 'uncork', 'cork', 'uncork']);
  });
});
