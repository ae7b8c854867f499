// What a KafkaSource says of its own link (`connectionLost()`), on a manual clock, its Kafka
// client faked at its prototype (kafka-source-test-support.ts). Against a real Kafka cut off by a proxy: kafka-consumer-health.test.ts.
import { NetworkError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { KeelError } from '../../../errors/index.ts';
import { ManualClock } from '../../../time/index.ts';
import { answered, fetchApi } from './kafka-answers-test-support.ts';
import { switchOverMs } from './kafka-source-link.ts';
import { openSource } from './kafka-source-test-support.ts';

/** The client's failure of a fetch whose leader moved: its retries all answered so. */
const leaderMoved = (): Error => answered(fetchApi, 'NOT_LEADER_OR_FOLLOWER');

describe('KafkaSource.connectionLost(): a stream ended by a partition leader moving', () => {
  it('is no loss when the consumer is still connected and the reopen goes through', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    kafka.streams[0]!.fail(leaderMoved());
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(500);
    expect(kafka.streams).toHaveLength(2);
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(switchOverMs);
    expect(source.connectionLost()).toBeUndefined();
  });

  it('is a loss from its end once a reopen fails', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const endedAt = clock.now();
    const refused = new NetworkError('Connection closed');
    kafka.consumes.push(refused);
    kafka.streams[0]!.fail(leaderMoved());
    await clock.advance(499);
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(1);
    const loss = source.connectionLost();
    expect(loss).toMatchObject({ since: endedAt, attempts: 1 });
    expect(loss!.error).toBeInstanceOf(KeelError);
    expect((loss!.error as KeelError).cause).toBe(refused);
    // The next reopen, a second later, goes through.
    await clock.advance(1000);
    expect(source.connectionLost()).toBeUndefined();
  });

  it(`is a loss from its end once it has been down for ${switchOverMs} ms, the reopen still going`, async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const endedAt = clock.now();
    kafka.consumes.push('hang');
    const cause = leaderMoved();
    kafka.streams[0]!.fail(cause);
    await clock.advance(switchOverMs - 1);
    expect(source.connectionLost()).toBeUndefined();
    await clock.advance(1);
    expect(source.connectionLost()).toEqual({ since: endedAt, attempts: 0, error: cause });
  });

  it(`is a loss from the first end once streams reopened keep ending for ${switchOverMs} ms (a partition without a leader)`, async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const endedAt = clock.now();
    kafka.streams[0]!.fail(leaderMoved());
    while (clock.now() - endedAt < switchOverMs) {
      expect(source.connectionLost()).toBeUndefined();
      const opened = kafka.streams.length;
      await clock.advanceToNext();
      // Each reopen goes through, and its stream ends at once.
      expect(kafka.streams).toHaveLength(opened + 1);
      kafka.streams.at(-1)!.fail(leaderMoved());
    }
    expect(source.connectionLost()).toMatchObject({ since: endedAt });
  });

  it('is a loss at once when the consumer’s own connections are down too: the link, not a leader', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const cut = new NetworkError('Connection closed');
    kafka.connected = false;
    kafka.streams[0]!.fail(cut);
    expect(source.connectionLost()).toEqual({ since: clock.now(), attempts: 0, error: cut });
    kafka.connected = true;
    await clock.advance(500);
    expect(source.connectionLost()).toBeUndefined();
  });
});

describe('KafkaSource.connectionLost(): the group membership', () => {
  it('is a loss at once when the heartbeats fail, the stream paused or not; rejoined in the background, failed rejoins counted', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const failedAt = clock.now();
    const heartbeat = new NetworkError('heartbeat failed 4 times.');
    kafka.joins.push(new NetworkError('joinGroup failed 4 times.'));
    kafka
      .consumer()
      .emit('consumer:heartbeat:error', { groupId: 'g', memberId: 'm', generationId: 1, error: heartbeat });
    const loss = source.connectionLost();
    expect(loss).toMatchObject({ since: failedAt, attempts: 0 });
    expect(loss!.error).toMatchObject({ code: 'KEEL_BROKER_UNAVAILABLE', cause: heartbeat });
    await clock.advance(500);
    expect(source.connectionLost()).toMatchObject({ since: failedAt, attempts: 1 });
    // The stream was never touched: the rejoin is the consumer's, the stream stays as it is.
    await clock.advance(1000);
    expect(source.connectionLost()).toBeUndefined();
    expect(kafka.streams).toHaveLength(1);
    expect(kafka.rejoins()).toBe(2);
  });

  it('is a loss when a rejoin the client began itself fails (its `error` event, which no longer throws)', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const refused = new NetworkError('rejoinGroup failed 4 times.');
    expect(() => kafka.consumer().emit('error', refused)).not.toThrow();
    expect(source.connectionLost()).toMatchObject({ since: clock.now(), attempts: 0 });
    await clock.advance(500);
    expect(source.connectionLost()).toBeUndefined();
  });
});
