import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../messaging/index.ts';
import { addToWalOutbox } from './wal-outbox.ts';
import { decodeWalOutboxRecord } from './wal-outbox-record.ts';

/** A transaction that records what it is sent, the way a keel Tx takes a write without waiting. */
function recordingTx(): {
  sent: [string, readonly unknown[]][];
  query: () => Promise<never>;
  sendWithoutWaiting(sql: string, params: readonly unknown[]): void;
} {
  const sent: [string, readonly unknown[]][] = [];
  return {
    sent,
    query: () => Promise.reject(new Error('a keel Tx is not awaited')),
    sendWithoutWaiting: (sql, params) => void sent.push([sql, params]),
  };
}

describe('addToWalOutbox', () => {
  it('writes one transactional logical message per call, which the relay decodes back', async () => {
    const tx = recordingTx();
    const messages = [
      createEnvelope({ type: 'order.placed.v1', key: 'o-1', payload: { total: 3 } }),
      createEnvelope({ type: 'order.placed.v1', key: null, payload: { total: 4 }, hlc: '1-0' }),
    ];
    await addToWalOutbox(tx, 'orders', messages, { prefix: 'p' });
    expect(tx.sent).toHaveLength(1);
    const [sql, params] = tx.sent[0]!;
    expect(sql).toContain('pg_logical_emit_message(true,');
    expect(params[0]).toBe('p');
    const record = decodeWalOutboxRecord(Buffer.from(params[1] as string));
    expect(record).toEqual({ v: 1, destination: 'orders', messages });
  });

  it('awaits the statement in a foreign transaction', async () => {
    const calls: unknown[][] = [];
    await addToWalOutbox(
      { query: async (sql: string, params: unknown[]) => void calls.push([sql, params]) },
      'orders',
      createEnvelope({ type: 't', payload: 1 }),
    );
    expect(calls).toHaveLength(1);
    expect(calls[0]![1]).toEqual(['keel_outbox', expect.any(String)]);
  });

  it('refuses bad input with a typed error naming it, and writes nothing for no messages', async () => {
    const tx = recordingTx();
    await expect(addToWalOutbox(tx, '', [])).rejects.toMatchObject({ code: 'KEEL_INVALID_ARGUMENT' });
    await expect(addToWalOutbox({} as never, 'orders', [])).rejects.toThrow(/tx: expected/);
    await expect(addToWalOutbox(tx, 'orders', [{ id: 1 } as never])).rejects.toThrow(/messages\[0\]/);
    await expect(addToWalOutbox(tx, 'orders', [], { prefix: '' })).rejects.toThrow(/prefix/);
    await addToWalOutbox(tx, 'orders', []);
    expect(tx.sent).toEqual([]);
  });
});

describe('decodeWalOutboxRecord', () => {
  it('names what is wrong with a record it cannot read', () => {
    const cases: [string, RegExp][] = [
      ['not json', /is not JSON/],
      ['[1]', /has encoding version undefined/],
      ['{"v":2}', /encoding version 2; this relay reads version 1/],
      ['{"v":1,"destination":""}', /has no destination/],
      ['{"v":1,"destination":"d","messages":{}}', /has no messages array/],
      ['{"v":1,"destination":"d","messages":[{"id":"x"}]}', /messages\[0\] that is not an envelope/],
    ];
    for (const [text, message] of cases) {
      expect(() => decodeWalOutboxRecord(Buffer.from(text))).toThrow(message);
    }
  });
});
