import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDb, type TestDb } from '../testing/db.ts';
import { isoFromTimestamptz } from './timestamptz-text.ts';

// Runs on the backend KEEL_DB chooses: the server's own text output is the input.
describe('isoFromTimestamptz', () => {
  let db: TestDb;
  beforeAll(async () => {
    db = await createTestDb();
  });
  afterAll(async () => {
    await db.close();
  });

  const instants = [
    '2026-12-07 17:58:38.123456+00',
    '2026-01-01 00:00:00+00',
    '1999-12-31 23:59:59.9999+00',
    '2024-02-29 23:30:00.000001+00',
    '1900-01-01 00:00:00.5+00',
    '0099-06-01 12:00:00.25+00',
  ];
  // UTC, whole hours, half and three-quarter hours, and a local mean time with seconds (1900).
  const zones = [
    'UTC',
    'Europe/Berlin',
    'Asia/Kolkata',
    'America/St_Johns',
    'Pacific/Chatham',
    'Europe/Amsterdam',
  ];

  it.each(zones)("reads the server's text in time zone %s as the instant it names", async (zone) => {
    await db.transaction(async (tx) => {
      await tx.query(`SELECT set_config('TimeZone', $1, true)`, [zone]);
      for (const instant of instants) {
        const { rows } = await tx.query<{ text: string; expected: string }>(
          `SELECT $1::timestamptz::text AS text,
                  to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS expected`,
          [instant],
        );
        const { text, expected } = rows[0]!;
        expect(isoFromTimestamptz(text), `${instant} as ${text}`).toBe(expected);
      }
    });
  });

  it('cuts digits past the millisecond, as a Date does', () => {
    expect(isoFromTimestamptz('2026-12-07 17:58:38.999999+00')).toBe('2026-12-07T17:58:38.999Z');
    expect(isoFromTimestamptz('2026-12-07 17:58:38.999999+05:30')).toBe('2026-12-07T12:28:38.999Z');
  });

  it('agrees with Date for any instant written with any whole-minute offset', () => {
    const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1000, 0, 1), max: Date.UTC(9998, 11, 31) }),
        fc.integer({ min: 0, max: 999 }),
        fc.integer({ min: -15 * 60, max: 15 * 60 }),
        (ms, micros, offsetMinutes) => {
          const local = new Date(ms + offsetMinutes * 60_000);
          const fraction = `${pad(local.getUTCMilliseconds(), 3)}${pad(micros, 3)}`.replace(/0+$/, '');
          const offset = Math.abs(offsetMinutes);
          const text =
            `${pad(local.getUTCFullYear(), 4)}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())} ` +
            `${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}` +
            `${fraction === '' ? '' : `.${fraction}`}${offsetMinutes < 0 ? '-' : '+'}${pad(Math.floor(offset / 60))}` +
            `${offset % 60 === 0 ? '' : `:${pad(offset % 60)}`}`;
          expect(isoFromTimestamptz(text)).toBe(new Date(ms).toISOString());
        },
      ),
    );
  });

  it('reads years before the common era', () => {
    expect(isoFromTimestamptz('0044-03-15 12:00:00+00 BC')).toBe(
      new Date(Date.UTC(-43, 2, 15, 12)).toISOString(),
    );
  });

  it('passes a Date through, and refuses text that is not a finite timestamp', () => {
    expect(isoFromTimestamptz(new Date(Date.UTC(2026, 11, 7)))).toBe('2026-12-07T00:00:00.000Z');
    expect(() => isoFromTimestamptz('infinity')).toThrow(RangeError);
    expect(() => isoFromTimestamptz('12/07/2026 17:58:38 UTC')).toThrow(RangeError);
  });
});
