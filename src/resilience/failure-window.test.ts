import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createDetector } from './failure-window.ts';

type Step =
  { kind: 'call'; failed: boolean; durationMs: number } | { kind: 'wait'; ms: number } | { kind: 'reset' };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('call' as const),
      failed: fc.boolean(),
      durationMs: fc.nat(300),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.nat(700) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
);

/** The simple model: keep every outcome, filter at the end. */
interface Outcome {
  at: number;
  failed: boolean;
  slow: boolean;
}

function model(history: Outcome[]) {
  const calls = history.length;
  const failures = history.filter((o) => o.failed).length;
  const slowCalls = history.filter((o) => o.slow).length;
  return {
    calls,
    failures,
    slowCalls,
    failureRate: calls ? failures / calls : 0,
    slowCallRate: calls ? slowCalls / calls : 0,
  };
}

describe('failure detectors against a reference model', () => {
  it('count window: stats equal the last `size` outcomes since the last reset', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(step, { maxLength: 80 }), (size, steps) => {
        const detector = createDetector({ kind: 'count', size, slowCallMs: 100 });
        let history: Outcome[] = [];
        for (const s of steps) {
          if (s.kind === 'reset') {
            detector.reset();
            history = [];
          } else if (s.kind === 'call') {
            detector.record(s.failed, s.durationMs >= 100, 0);
            history.push({ at: 0, failed: s.failed, slow: s.durationMs >= 100 });
          }
          expect(detector.stats(0)).toEqual(model(history.slice(-size)));
        }
      }),
    );
  });

  it('time window: stats equal the outcomes whose bucket is among the last `buckets`', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 3000 }),
        fc.array(step, { maxLength: 80 }),
        (buckets, windowMs, steps) => {
          const detector = createDetector({ kind: 'time', windowMs, buckets, slowCallMs: 100 });
          const bucketMs = windowMs / buckets;
          let now = 1_000_000;
          let history: Outcome[] = [];
          for (const s of steps) {
            if (s.kind === 'reset') {
              detector.reset();
              history = [];
            } else if (s.kind === 'wait') now += s.ms;
            else {
              detector.record(s.failed, s.durationMs >= 100, now);
              history.push({ at: now, failed: s.failed, slow: s.durationMs >= 100 });
            }
            const current = Math.floor(now / bucketMs);
            const live = history.filter((o) => Math.floor(o.at / bucketMs) > current - buckets);
            expect(detector.stats(now)).toEqual(model(live));
          }
        },
      ),
    );
  });

  it('consecutive: opens exactly when the run of failures reaches the threshold', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.boolean(), { maxLength: 60 }),
        (failures, outcomes) => {
          const detector = createDetector({ kind: 'consecutive', failures });
          let run = 0;
          for (const failed of outcomes) {
            run = failed ? run + 1 : 0;
            expect(detector.record(failed, false, 0)).toBe(
              run >= failures ? 'consecutive-failures' : undefined,
            );
          }
        },
      ),
    );
  });

  it('a rate window gives no verdict below minimumCalls and opens at the failure rate', () => {
    const detector = createDetector({ kind: 'count', size: 10, minimumCalls: 4, failureRate: 0.5 });
    expect(detector.record(true, false, 0)).toBeUndefined();
    expect(detector.record(true, false, 0)).toBeUndefined();
    expect(detector.record(false, false, 0)).toBeUndefined();
    expect(detector.record(false, false, 0)).toBe('failure-rate');
  });

  it('opens on the slow-call rate when calls are slow but succeed', () => {
    const detector = createDetector({ kind: 'count', size: 4, slowCallMs: 50, slowCallRate: 0.75 });
    const verdicts = [true, true, false, true].map((slow) => detector.record(false, slow, 0));
    expect(verdicts).toEqual([undefined, undefined, undefined, 'slow-call-rate']);
  });

  it('rejects bad thresholds naming the field', () => {
    expect(() => createDetector({ kind: 'consecutive', failures: 0 })).toThrow(/threshold.failures/);
    expect(() => createDetector({ kind: 'count', size: 10, failureRate: 1.5 })).toThrow(
      /threshold.failureRate: expected a number in \(0, 1\]/,
    );
    expect(() => createDetector({ kind: 'time', windowMs: 0 })).toThrow(/threshold.windowMs/);
    expect(() => createDetector({ kind: 'sliding' } as never)).toThrow(/threshold.kind/);
  });
});
