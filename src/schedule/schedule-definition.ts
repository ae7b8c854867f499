import { Cron } from 'croner';
import type { Tx } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { exponentialBackoff, type Backoff } from '../time/index.ts';

/** One occurrence of a schedule, as its `fire` sees it. */
export interface ScheduleTick {
  /** The schedule's name. */
  readonly schedule: string;
  /** When the tick was due: the instant its cron expression or interval names. */
  readonly at: Date;
  /**
   * `<schedule>@<at as ISO 8601>`: the same for every attempt at this tick in every process, so
   * it can be an outbox message's id or an idempotency key passed on downstream.
   */
  readonly key: string;
  /**
   * The scheduler's clock when it chose to fire this tick: at or after `at`, by at most the
   * schedule's `catchUpWindowMs`.
   */
  readonly firedAt: Date;
  /** 1 for the first attempt at this tick, more after a failed one. */
  readonly attempt: number;
  /**
   * Aborts when the scheduler's `stop()` passes its drain deadline with this tick still running:
   * pass it to slow work and give up, and the tick's transaction rolls back (tried again later).
   */
  readonly signal: AbortSignal;
  /**
   * Set when earlier ticks were passed over to reach this one (too old for the catch-up window,
   * or coalesced by `catchUp: 'latest'`): every tick from `from` up to, not including, `at`.
   */
  readonly skippedFrom?: Date;
  /**
   * Set on a run asked for by hand (`keel schedule trigger`, `triggerSchedule`), not one of the
   * schedule's ticks: `at` is when it was asked for, and `key` ends in `/triggered-<n>`, the
   * schedule's n-th run by hand. It is attempted once.
   */
  readonly triggered?: true;
}

/**
 * What a tick does, in the transaction that records it fired: both commit or neither does, so a
 * tick's writes happen once however many schedulers run. Work outside the database goes through
 * the outbox (`outbox.add(tx, …)`), to a consumer that retries it.
 */
export type FireTick = (tx: Tx, tick: ScheduleTick) => Promise<void>;

export interface ScheduleOptions {
  /** Unique among schedules sharing a database: letters, digits and `.`, `_`, `:`, `-`; 1–200 characters. */
  name: string;
  /**
   * A cron expression: five fields (minute precision) or six (seconds first), names and `L`,
   * `W`, `#` as croner reads them, or a nickname (`@daily`). Exactly one of `cron` and `everyMs`.
   */
  cron?: string;
  /** The IANA time zone `cron` is read in (`Europe/Berlin`). Default UTC. */
  timezone?: string;
  /** A tick every `everyMs`, at the multiples of it since the Unix epoch (so every process agrees). */
  everyMs?: number;
  fire: FireTick;
  /**
   * A due tick older than this when a scheduler reaches it (every scheduler was down, or the
   * schedule was paused) is skipped, not fired. Default 60 000: a restart's gap is caught up, a
   * night's outage is not. `Infinity` catches up any backlog.
   */
  catchUpWindowMs?: number;
  /**
   * Several ticks due at once within the window: `'latest'` (default) fires the newest one and
   * reports the others as skipped; `'each'` fires every one, oldest first, one transaction each.
   */
  catchUp?: 'latest' | 'each';
  /** Attempts at one tick before it is given up (reported, and the schedule moves on). Default 5. */
  maxAttempts?: number;
  /** Wait before attempt n + 1 after n failed. Default 1 s doubling, full jitter, 5 min cap. */
  backoff?: Backoff;
}

export interface Schedule {
  readonly name: string;
  /** The schedule's timing as text (`cron 0 3 * * * Europe/Berlin`, `every 60000`): a change of it re-plans the next tick. */
  readonly spec: string;
  readonly fire: FireTick;
  readonly catchUpWindowMs: number;
  readonly catchUp: 'latest' | 'each';
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  /** The first tick strictly after `afterMs`, in ms since the epoch. */
  nextTickAfter(afterMs: number): number;
  /** The last tick at or before `ms`. */
  lastTickAtOrBefore(ms: number): number;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/;

/** Checks a schedule's options once, at definition, so a typo fails at boot and not at 3 a.m. */
export function defineSchedule(options: ScheduleOptions): Schedule {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('schedule', 'an object of schedule options', options);
  const { name, fire } = options;
  if (typeof name !== 'string' || !namePattern.test(name))
    throw new InvalidArgumentError(
      'name',
      'letters, digits, ".", "_", ":" or "-", 1–200 characters, starting with a letter or digit',
      name,
    );
  if (typeof fire !== 'function')
    throw new InvalidArgumentError(`${name}.fire`, 'a function (tx, tick)', fire);
  const timing = scheduleTiming(options);
  const catchUpWindowMs = options.catchUpWindowMs ?? 60_000;
  if (!(catchUpWindowMs >= 0))
    throw new InvalidArgumentError(`${name}.catchUpWindowMs`, 'a number of ms >= 0', options.catchUpWindowMs);
  const catchUp = options.catchUp ?? 'latest';
  if (catchUp !== 'latest' && catchUp !== 'each')
    throw new InvalidArgumentError(`${name}.catchUp`, "'latest' or 'each'", options.catchUp);
  const maxAttempts = options.maxAttempts ?? 5;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)
    throw new InvalidArgumentError(`${name}.maxAttempts`, 'an integer >= 1', options.maxAttempts);
  const backoff = options.backoff ?? exponentialBackoff({ initialMs: 1000, maxMs: 300_000 });
  if (typeof backoff?.delay !== 'function')
    throw new InvalidArgumentError(
      `${name}.backoff`,
      'a Backoff ({ delay(retry, previous) })',
      options.backoff,
    );
  return { name, fire, catchUpWindowMs, catchUp, maxAttempts, backoff, ...timing };
}

type ScheduleTiming = Pick<Schedule, 'spec' | 'nextTickAfter' | 'lastTickAtOrBefore'>;

function scheduleTiming(options: ScheduleOptions): ScheduleTiming {
  const { name, cron, everyMs, timezone } = options;
  if ((cron === undefined) === (everyMs === undefined))
    throw new InvalidArgumentError(`${name}.cron`, 'exactly one of cron and everyMs', { cron, everyMs });
  if (everyMs !== undefined) {
    if (!Number.isSafeInteger(everyMs) || everyMs < 1)
      throw new InvalidArgumentError(`${name}.everyMs`, 'an integer number of ms >= 1', everyMs);
    if (timezone !== undefined)
      throw new InvalidArgumentError(
        `${name}.timezone`,
        'no time zone with everyMs (it counts from the epoch)',
        timezone,
      );
    return {
      spec: `every ${everyMs}`,
      nextTickAfter: (afterMs) => (Math.floor(afterMs / everyMs) + 1) * everyMs,
      lastTickAtOrBefore: (ms) => Math.floor(ms / everyMs) * everyMs,
    };
  }
  if (typeof cron !== 'string' || cron.trim() === '')
    throw new InvalidArgumentError(`${name}.cron`, 'a cron expression', cron);
  if (timezone !== undefined && (typeof timezone !== 'string' || !isTimeZone(timezone)))
    throw new InvalidArgumentError(`${name}.timezone`, 'an IANA time zone name (Europe/Berlin)', timezone);
  const pattern = cron.trim().replace(/\s+/g, ' ');
  let parsed: Cron;
  try {
    // Paused: croner is used to compute instants only, never to run a timer of its own.
    parsed = new Cron(pattern, { paused: true, timezone: timezone ?? 'UTC', mode: '5-or-6-parts' });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidArgumentError(`${name}.cron`, `a valid cron expression (${reason})`, cron);
  }
  if (parsed.nextRun(new Date(0)) === null)
    throw new InvalidArgumentError(`${name}.cron`, 'a cron expression that ever matches', cron);
  // Five or six fields have no year: a pattern that matched once matches again within years.
  return {
    spec: `cron ${pattern} ${timezone ?? 'UTC'}`,
    nextTickAfter: (afterMs) => instant(parsed.nextRun(new Date(afterMs))),
    lastTickAtOrBefore: (ms) => instant(parsed.previousRuns(1, new Date(ms + 1))[0]),
  };
}

function instant(date: Date | null | undefined): number {
  if (date == null) throw new Error('croner found no tick of a pattern that matched before');
  return date.getTime();
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
