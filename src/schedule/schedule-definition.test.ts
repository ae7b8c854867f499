import { describe, expect, it } from 'vitest';
import { defineSchedule, type ScheduleOptions } from './schedule-definition.ts';
import { planTick } from './tick-plan.ts';

const fire = async (): Promise<void> => {};
const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number): string => new Date(ms).toISOString();

describe('defineSchedule', () => {
  it('reads a five-field cron in UTC by default, each tick strictly after the instant given', () => {
    const s = defineSchedule({ name: 'nightly', cron: '30 2 * * *', fire });
    expect(s.spec).toBe('cron 30 2 * * * UTC');
    expect(iso(s.nextTickAfter(at('2026-03-01T02:29:59.999Z')))).toBe('2026-03-01T02:30:00.000Z');
    expect(iso(s.nextTickAfter(at('2026-03-01T02:30:00.000Z')))).toBe('2026-03-02T02:30:00.000Z');
    expect(iso(s.lastTickAtOrBefore(at('2026-03-01T02:30:00.000Z')))).toBe('2026-03-01T02:30:00.000Z');
    expect(iso(s.lastTickAtOrBefore(at('2026-03-01T02:29:59.999Z')))).toBe('2026-02-28T02:30:00.000Z');
  });

  it('reads six fields with seconds first, and a cron in a time zone across its DST change', () => {
    const everyTen = defineSchedule({ name: 'ten', cron: '*/10 * * * * *', fire });
    expect(iso(everyTen.nextTickAfter(at('2026-01-01T00:00:05Z')))).toBe('2026-01-01T00:00:10.000Z');
    const berlin = defineSchedule({ name: 'b', cron: '0 9 * * *', timezone: 'Europe/Berlin', fire });
    expect(berlin.spec).toBe('cron 0 9 * * * Europe/Berlin');
    // 09:00 is 08:00Z in winter (CET) and 07:00Z once summer time began on 2026-03-29.
    expect(iso(berlin.nextTickAfter(at('2026-03-28T12:00:00Z')))).toBe('2026-03-29T07:00:00.000Z');
    expect(iso(berlin.nextTickAfter(at('2026-03-27T12:00:00Z')))).toBe('2026-03-28T08:00:00.000Z');
  });

  it('ticks everyMs at the multiples of it since the epoch, the same in every process', () => {
    const s = defineSchedule({ name: 'minutely', everyMs: 60_000, fire });
    expect(s.spec).toBe('every 60000');
    expect(iso(s.nextTickAfter(at('2026-01-01T00:00:30Z')))).toBe('2026-01-01T00:01:00.000Z');
    expect(iso(s.nextTickAfter(at('2026-01-01T00:01:00Z')))).toBe('2026-01-01T00:02:00.000Z');
    expect(iso(s.lastTickAtOrBefore(at('2026-01-01T00:01:59.999Z')))).toBe('2026-01-01T00:01:00.000Z');
  });

  it('normalises the cron text so spacing alone is not a new definition', () => {
    expect(defineSchedule({ name: 'a', cron: ' 0  3 * * *', fire }).spec).toBe('cron 0 3 * * * UTC');
  });

  const refusals: [string, Partial<ScheduleOptions>, RegExp][] = [
    ['a name with a space', { name: 'daily report', cron: '@daily' }, /^name: expected letters/],
    ['an empty name', { name: '', cron: '@daily' }, /^name:/],
    ['both timings', { cron: '@daily', everyMs: 1000 }, /^s\.cron: expected exactly one of cron and everyMs/],
    ['no timing', {}, /^s\.cron: expected exactly one/],
    [
      'a minute of 61',
      { cron: '61 * * * *' },
      /^s\.cron: expected a valid cron expression \(.*minute.*\), got "61 \* \* \* \*"/,
    ],
    ['seven fields', { cron: '0 0 0 1 1 * 2030' }, /^s\.cron: expected a valid cron expression/],
    [
      'the 30th of February',
      { cron: '0 0 30 2 *' },
      /^s\.cron: expected a (valid cron expression|cron expression that ever matches)/,
    ],
    [
      'an unknown time zone',
      { cron: '@daily', timezone: 'Mars/Olympus' },
      /^s\.timezone: expected an IANA time zone/,
    ],
    ['a zone with everyMs', { everyMs: 1000, timezone: 'UTC' }, /^s\.timezone:/],
    [
      'a fractional interval',
      { everyMs: 1.5 },
      /^s\.everyMs: expected an integer number of ms >= 1, got 1\.5/,
    ],
    ['a zero interval', { everyMs: 0 }, /^s\.everyMs:/],
    ['a negative window', { everyMs: 1000, catchUpWindowMs: -1 }, /^s\.catchUpWindowMs:/],
    [
      'an unknown catch-up',
      { everyMs: 1000, catchUp: 'all' as never },
      /^s\.catchUp: expected 'latest' or 'each'/,
    ],
    ['zero attempts', { everyMs: 1000, maxAttempts: 0 }, /^s\.maxAttempts:/],
    ['no fire', { everyMs: 1000, fire: undefined }, /^s\.fire: expected a function/],
  ];
  it.each(refusals)('refuses %s with KEEL_INVALID_ARGUMENT naming the field', (_, options, message) => {
    const call = () => defineSchedule({ name: 's', fire, ...options });
    expect(call).toThrow(expect.objectContaining({ code: 'KEEL_INVALID_ARGUMENT' }));
    expect(call).toThrow(message);
  });
});

describe('planTick', () => {
  const minute = 60_000;
  const t0 = at('2026-01-01T00:00:00Z');
  const hourly = (options: Partial<ScheduleOptions> = {}) =>
    defineSchedule({ name: 'h', everyMs: 60 * minute, fire, ...options });

  it('fires the due tick when it is within the window', () => {
    expect(planTick(hourly(), t0, t0 + 5_000)).toEqual({ kind: 'fire', tick: t0 });
  });

  it("fires the newest due tick with 'latest' and the oldest with 'each'", () => {
    const now = t0 + 2 * 60 * minute + 10_000;
    const window = { catchUpWindowMs: 3 * 60 * minute };
    expect(planTick(hourly(window), t0, now)).toEqual({ kind: 'fire', tick: t0 + 2 * 60 * minute });
    expect(planTick(hourly({ ...window, catchUp: 'each' }), t0, now)).toEqual({ kind: 'fire', tick: t0 });
  });

  it('passes over ticks older than the window, to the first one inside it', () => {
    const now = t0 + 2 * 60 * minute + 10_000;
    const each = hourly({ catchUp: 'each', catchUpWindowMs: 90 * minute });
    expect(planTick(each, t0, now)).toEqual({ kind: 'fire', tick: t0 + 60 * minute });
  });

  it('skips to the next tick when every due one is older than the window', () => {
    const now = t0 + 2 * 60 * minute + 2 * minute;
    expect(planTick(hourly(), t0, now)).toEqual({ kind: 'skip', nextTick: t0 + 3 * 60 * minute });
    expect(planTick(hourly({ catchUpWindowMs: 0 }), t0, t0 + 1)).toEqual({
      kind: 'skip',
      nextTick: t0 + 60 * minute,
    });
  });

  it('catches up any backlog with an infinite window', () => {
    const each = hourly({ catchUp: 'each', catchUpWindowMs: Infinity });
    expect(planTick(each, t0, t0 + 1000 * 60 * minute)).toEqual({ kind: 'fire', tick: t0 });
  });
});
