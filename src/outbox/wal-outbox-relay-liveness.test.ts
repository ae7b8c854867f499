import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time/index.ts';
import { StreamLiveness } from './wal-outbox-relay-liveness.ts';

describe('StreamLiveness', () => {
  it('says how long the server was silent once it passed the timeout, counted from what it heard last', async () => {
    const clock = new ManualClock();
    const liveness = new StreamLiveness(clock, 1000);
    liveness.started();
    await clock.advance(1000);
    expect(liveness.silentFor()).toBeUndefined();
    liveness.heard();
    await clock.advance(1000);
    expect(liveness.silentFor()).toBeUndefined();
    await clock.advance(1);
    expect(liveness.silentFor()).toBe(1001);
    // A new stream counts from its start.
    liveness.started();
    expect(liveness.silentFor()).toBeUndefined();
  });

  it('does not count the time the relay did not read, and counts afresh once it reads again', async () => {
    const clock = new ManualClock();
    const liveness = new StreamLiveness(clock, 1000);
    liveness.started();
    await clock.advance(600);
    liveness.paused();
    await clock.advance(60_000);
    expect(liveness.silentFor()).toBeUndefined();
    liveness.resumed();
    await clock.advance(1000);
    expect(liveness.silentFor()).toBeUndefined();
    // A second resume while reading changes nothing.
    liveness.resumed();
    await clock.advance(1);
    expect(liveness.silentFor()).toBe(1001);
    // A stream started while paused reads.
    liveness.paused();
    liveness.started();
    await clock.advance(1001);
    expect(liveness.silentFor()).toBe(1001);
  });
});
