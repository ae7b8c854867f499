// A KafkaSource whose group coordinator moved to another broker, on a manual clock, its client
// faked (kafka-source-test-support.ts). @platformatic/kafka 1.35.0 asks a client's coordinator
// once and never again (`#coordinatorId` in its consumer.js is set by the first FindCoordinator
// and reset nowhere), so a client that lost it fails every group call for good; only a new
// client finds the broker that took over. A single broker cannot move its coordinator: this is
// the test of it.
import { MultipleErrors, NetworkError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../time/index.ts';
import { groupRefusal, openSource } from './kafka-source-test-support.ts';

const heartbeatFailed = (error: Error) =>
  ['consumer:heartbeat:error', { groupId: 'g', memberId: 'm', generationId: 1, error }] as const;

describe('KafkaSource: its group coordinator moved', () => {
  it.each(['NOT_COORDINATOR', 'COORDINATOR_NOT_AVAILABLE', 'COORDINATOR_LOAD_IN_PROGRESS'])(
    'builds a new client once its heartbeats are answered %s, and is ok again with it',
    async (id) => {
      const clock = new ManualClock();
      const { source, kafka } = await openSource(clock);
      const first = kafka.consumer();
      const refused = (operation: string) => groupRefusal(operation, id);
      kafka.coordinatorMoved(refused);
      first.emit(...heartbeatFailed(refused('heartbeat')));
      const lostAt = clock.now();
      expect(source.connectionLost()).toMatchObject({ since: lostAt, attempts: 0 });
      // The old client's rejoins would be refused for ever: the first attempt is a new client.
      await clock.advance(500);
      expect(source.connectionLost()).toBeUndefined();
      expect(kafka.consumers).toHaveLength(2);
      expect(kafka.closed).toEqual(new Set([first]));
      // It left no seat behind to ask a coordinator that no longer answers for it.
      expect(first.memberId).toBeNull();
      expect(kafka.streams.map((stream) => stream.closed)).toEqual([true, false]);
      expect(kafka.rejoins()).toBe(0);
      // What the closed client emits after is not the source's link.
      first.emit(...heartbeatFailed(refused('heartbeat')));
      expect(() => first.emit('error', refused('joinGroup'))).not.toThrow();
      expect(source.connectionLost()).toBeUndefined();
      // Nothing lost after that: no further client.
      await clock.advance(60_000);
      expect(kafka.consumers).toHaveLength(2);
      expect(source.connectionLost()).toBeUndefined();
    },
  );

  it('builds a new client once a reopen of its stream is refused NOT_COORDINATOR', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    kafka.coordinatorMoved((operation) => groupRefusal(operation, 'NOT_COORDINATOR'));
    const endedAt = clock.now();
    kafka.streams[0]!.fail(new NetworkError('Connection closed'));
    await clock.advance(500);
    // The reopen's join went to the old coordinator.
    expect(source.connectionLost()).toMatchObject({ since: endedAt, attempts: 1 });
    expect(kafka.consumers).toHaveLength(1);
    await clock.advance(1000);
    expect(source.connectionLost()).toBeUndefined();
    expect(kafka.consumers).toHaveLength(2);
    expect(kafka.closed).toEqual(new Set([kafka.consumer()]));
    expect(kafka.streams).toHaveLength(2);
  });

  it('builds a new client after three failures in a row when the client hides why (its coordinator broker unreachable)', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const first = kafka.consumer();
    const unreachable = (operation: string) =>
      new MultipleErrors(
        `${operation} failed 4 times.`,
        Array.from({ length: 4 }, () => new NetworkError('Connection to 10.0.0.7:9092 failed.')),
      );
    kafka.coordinatorMoved(unreachable);
    first.emit(...heartbeatFailed(unreachable('heartbeat')));
    // A network failure is first taken for a blip: the same client rejoins (its member id kept).
    await clock.advance(500);
    expect(source.connectionLost()).toMatchObject({ attempts: 1 });
    await clock.advance(1000);
    expect(source.connectionLost()).toMatchObject({ attempts: 2 });
    expect(kafka.rejoins()).toBe(2);
    expect(kafka.consumers).toHaveLength(1);
    // The heartbeat and two rejoins failed: the next attempt is a new client.
    await clock.advance(2000);
    expect(source.connectionLost()).toBeUndefined();
    expect(kafka.consumers).toHaveLength(2);
    expect(kafka.closed).toEqual(new Set([first]));
  });

  it('keeps the records in hand: acked after the new client joined, committed through it, not handed out again', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    const first = kafka.consumer();
    for (const offset of [0n, 1n]) kafka.streams[0]!.emit('data', kafka.message(first, offset));
    const [held] = await source.claim(1);
    expect(held!.record.offset).toBe(0n);
    kafka.coordinatorMoved((operation) => groupRefusal(operation, 'NOT_COORDINATOR'));
    first.emit(...heartbeatFailed(groupRefusal('heartbeat', 'NOT_COORDINATOR')));
    await clock.advance(500);
    const second = kafka.consumers[1]!;
    expect(source.connectionLost()).toBeUndefined();
    // The new client's stream starts again from the committed offset (nothing committed yet).
    for (const offset of [0n, 1n, 2n]) kafka.streams[1]!.emit('data', kafka.message(second, offset));
    await source.ack([held!]);
    expect(kafka.commits).toEqual([{ consumer: second, partition: 0, offset: 1n }]);
    const next = await source.claim(4);
    expect(next.map((delivery) => delivery.record.offset)).toEqual([1n, 2n]);
    await source.ack(next);
    expect(kafka.commits.at(-1)).toEqual({ consumer: second, partition: 0, offset: 3n });
    expect(await source.claim(4)).toEqual([]);
  });

  it('closes a client whose LeaveGroup is refused all the same: no leave (its member expires), its connections closed', async () => {
    const clock = new ManualClock();
    const { source, kafka } = await openSource(clock);
    kafka.leaveRefused = true;
    await source.close();
    expect(kafka.closed).toEqual(new Set([kafka.consumer()]));
    expect(kafka.consumer().memberId).toBeNull();
  });
});
