// Without Kafka: the runner's argument checks, and how fetched batches become entries. The
// runner against a real Kafka and database: test/integration/kafka-projection.test.ts, and
// kafka-projection-trimmed.test.ts beside this file for offsets a partition no longer holds.
import type { RecordsBatch } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import type { Db } from '../../../db/index.ts';
import { advanceUntil } from '../../../testing/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { createEnvelope } from '../../envelope.ts';
import { KafkaProjectionRunner, type KafkaProjection } from './kafka-projection.ts';
import { encodeEnvelope } from './record-codec.ts';
import { entriesOf } from './topic-fetcher.ts';

const db = { transaction: () => Promise.reject(new Error('not used')) } as unknown as Db;
const projection: KafkaProjection = { apply: async () => undefined, reset: async () => undefined };

function batch(firstOffset: bigint, values: Buffer[], options: Partial<RecordsBatch> = {}): RecordsBatch {
  const envelopes = values.map((value) => ({ value, headers: [] as [Buffer | null, Buffer | null][] }));
  return {
    firstOffset,
    length: 0,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    attributes: 0,
    lastOffsetDelta: values.length - 1,
    firstTimestamp: 1_700_000_000_000n,
    maxTimestamp: 1_700_000_000_000n,
    producerId: -1n,
    producerEpoch: -1,
    firstSequence: -1,
    records: envelopes.map(({ value, headers }, i) => ({
      length: 0,
      attributes: 0,
      timestampDelta: BigInt(i),
      offsetDelta: i,
      key: null,
      value,
      headers,
    })),
    ...options,
  };
}

describe('KafkaProjectionRunner arguments', () => {
  it('rejects bad options by field, before anything connects', () => {
    const build = (options: object, handler: unknown = projection): KafkaProjectionRunner =>
      new KafkaProjectionRunner(db, handler as KafkaProjection, {
        name: 'p.v1',
        topic: 'orders',
        ...options,
      });
    expect(build({}).projection).toBe('p.v1');
    expect(() => build({ name: '' })).toThrow(
      expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT', field: 'name' }),
    );
    expect(() => build({ name: 'a b' })).toThrow(expect.objectContaining({ field: 'name' }));
    expect(() => build({ topic: 'no/slash' })).toThrow(expect.objectContaining({ field: 'topic' }));
    expect(() => build({ topic: '..' })).toThrow(expect.objectContaining({ field: 'topic' }));
    expect(() => build({ brokers: ['nohost'] })).toThrow(expect.objectContaining({ field: 'brokers' }));
    expect(() => build({ batchSize: 0 })).toThrow(expect.objectContaining({ field: 'batchSize' }));
    expect(() => build({ pollIntervalMs: 1.5 })).toThrow(
      expect.objectContaining({ field: 'pollIntervalMs' }),
    );
    expect(() => build({ retryDelayMs: -1 })).toThrow(expect.objectContaining({ field: 'retryDelayMs' }));
    expect(() => build({ maxWaitMs: -1 })).toThrow(expect.objectContaining({ field: 'maxWaitMs' }));
    // A fetch that returns at once would make an idle runner spin.
    expect(() => build({ maxWaitMs: 0 })).toThrow(expect.objectContaining({ field: 'maxWaitMs' }));
    for (const staleLeaderLimitMs of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '30000'])
      expect(() => build({ staleLeaderLimitMs })).toThrow(
        expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT', field: 'staleLeaderLimitMs' }),
      );
    // 0: a leader moving is a failure like any other, as before the runner rode it out.
    expect(build({ staleLeaderLimitMs: 0 }).projection).toBe('p.v1');
    expect(build({ staleLeaderLimitMs: 5000 }).projection).toBe('p.v1');
    expect(() => build({ onTrimmed: 'skip' })).toThrow(expect.objectContaining({ field: 'onTrimmed' }));
    expect(build({ onTrimmed: 'resume' }).projection).toBe('p.v1');
    // 'resume' is onTrimmed's word: a recreated topic has nothing to resume from.
    expect(() => build({ onRecreated: 'resume' })).toThrow(expect.objectContaining({ field: 'onRecreated' }));
    expect(build({ onRecreated: 'restart' }).projection).toBe('p.v1');
    expect(() => build({}, { apply: async () => undefined })).toThrow(
      expect.objectContaining({ field: 'handler' }),
    );
    expect(
      () =>
        new KafkaProjectionRunner(db, projection, undefined as unknown as { name: string; topic: string }),
    ).toThrow(expect.objectContaining({ field: 'options' }));
    expect(() => new KafkaProjectionRunner({} as Db, projection, { name: 'p', topic: 't' })).toThrow(
      expect.objectContaining({ field: 'db' }),
    );
  });

  it('stop() before start() is idempotent and leaves it stopped; catchUp() is refused then', async () => {
    const run = new KafkaProjectionRunner(db, projection, { name: 'p', topic: 't' });
    const stopping = run.stop();
    expect(run.stop()).toBe(stopping);
    await stopping;
    expect(run.state).toBe('stopped');
    await expect(run.catchUp()).rejects.toMatchObject({ code: 'KEEL_SERVICE_STATE' });
  });
});

describe('KafkaProjectionRunner with no Kafka to reach', () => {
  // Nothing listens on port 1: each connection is refused at once.
  const nowhere = ['127.0.0.1:1'];

  it('starts anyway, reports each failed look as an error and looks again after retryDelayMs on its clock', async () => {
    const clock = new ManualClock();
    const run = new KafkaProjectionRunner(db, projection, {
      name: 'p',
      topic: 't',
      brokers: nowhere,
      clock,
      retryDelayMs: 5000,
    });
    const failures: { error: unknown; during: string; at: number }[] = [];
    run.events.on('error', ({ error, during }) => void failures.push({ error, during, at: clock.now() }));
    const first = run.events.once('error');
    await run.start();
    await first;
    const second = run.events.once('error');
    await advanceUntil(clock, second, { stepMs: 1000 });
    expect(failures[0]).toMatchObject({ during: 'fetch', error: { code: 'KEEL_BROKER_UNAVAILABLE' } });
    expect(failures[1]!.at - failures[0]!.at).toBeGreaterThanOrEqual(5000);
    await run.stop({ drainMs: 1000 });
    expect(run.state).toBe('stopped');
  });

  it('rejects a status read or a catch-up with KEEL_BROKER_UNAVAILABLE naming the topic, at once: no leader is moving', async () => {
    // On a manual clock nobody advances: a retry would never come back.
    const clock = new ManualClock();
    const run = new KafkaProjectionRunner(db, projection, {
      name: 'p',
      topic: 'orders',
      brokers: nowhere,
      clock,
    });
    const refused = {
      code: 'KEEL_BROKER_UNAVAILABLE',
      message: expect.stringContaining('orders') as unknown,
    };
    await expect(run.partitions()).rejects.toMatchObject(refused);
    await expect(run.catchUp()).rejects.toMatchObject(refused);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('entriesOf: fetched batches to entries', () => {
  it('keeps records from the offset asked for on, in order, decoded, with their timestamps', () => {
    const envelopes = [0, 1, 2].map((n) =>
      createEnvelope({ type: 'thing.counted.v1', payload: { n }, key: 'k' }),
    );
    const encoded = envelopes.map((e) => encodeEnvelope(e));
    const fetched = batch(
      10n,
      encoded.map((e) => e.value),
    );
    // The keel headers, the way a fetch returns them: [name, value] pairs.
    fetched.records.forEach((record, i) => {
      record.key = encoded[i]!.key ?? null;
      record.headers = [...encoded[i]!.headers];
    });
    // A fetch returns whole batches: asked for 11, the batch begins at 10.
    const entries = entriesOf('orders', 2, [fetched], 11n);
    expect(entries.map((e) => e.offset)).toEqual([11n, 12n]);
    expect(entries.map((e) => e.envelope)).toEqual(envelopes.slice(1));
    expect(entries[0]).toMatchObject({
      topic: 'orders',
      partition: 2,
      timestamp: new Date(1_700_000_000_001),
    });
  });

  it('skips transaction markers, and hands a value that is not JSON on as kafka.undecodable', () => {
    const marker = batch(0n, [Buffer.from([0, 0, 0, 0])], { attributes: 1 << 5 });
    const garbage = batch(1n, [Buffer.from('{nope')]);
    garbage.records[0]!.headers = [
      [null, Buffer.from('dropped')],
      [Buffer.from('x-note'), null],
    ];
    const [entry, ...rest] = entriesOf('orders', 0, [marker, garbage], 0n);
    expect(rest).toEqual([]);
    expect(entry?.offset).toBe(1n);
    expect(entry?.envelope).toMatchObject({
      id: 'kafka-orders-0-1',
      type: 'kafka.undecodable',
      payload: Buffer.from('{nope').toString('base64'),
    });
    expect(entry?.envelope.headers['x-keel-decode-error']).toMatch(/not JSON/);
    expect(entriesOf('orders', 0, undefined, 0n)).toEqual([]);
  });

  it('gives a record written without keel its position as its id, and a header without a value an empty one', () => {
    const plain = batch(5n, [Buffer.from('{"a":1}')]);
    plain.records[0]!.headers = [[Buffer.from('x-note'), null]];
    const [entry] = entriesOf('orders', 1, [plain], 5n);
    expect(entry?.envelope).toMatchObject({
      id: 'kafka-orders-1-5',
      type: 'kafka.record',
      payload: { a: 1 },
      headers: { 'x-note': '' },
    });
  });
});
