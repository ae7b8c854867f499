import { hostname } from 'node:os';
import type { Queryable } from '../../../src/db/index.ts';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import type { NamedPolicies } from '../../../src/observability/index.ts';
import { CircuitBreakerPolicy } from '../../../src/resilience/index.ts';
import {
  HealthRecord,
  ServiceBase,
  type ListenerHandle,
  type ReportsHealth,
  type ServiceHealth,
} from '../../../src/service/index.ts';
import { uuidv7At, type Clock, type TimerHandle } from '../../../src/time/index.ts';
import { partsHealthAsTheyRan, type PartsHealth } from './parts-health.ts';
import {
  markProcessStopped,
  missedBeatsBeforeStale,
  pruneProcesses,
  writeHeartbeat,
  type ProcessBreaker,
  type ProcessIdentity,
} from './processes-store.ts';

export interface ProcessHeartbeatOptions {
  /** Where the `processes` table is (migration 0006). */
  db: Queryable;
  clock: Clock;
  /** What this process runs (`ShopConfig.roles`). */
  roles: Iterable<string>;
  /**
   * This process's resilience policies by name, read at each beat: its circuit breakers are
   * written with the row, and a breaker changing state writes at once rather than at the next
   * beat (a breaker open for 5 s would otherwise come and go unseen). Default: none.
   */
  policies?: NamedPolicies;
  /**
   * The health of this process's parts by name (`partsHealthReport(group.healthOfParts())`),
   * read at each beat and written with the row: a reader then sees whether a live process's
   * parts reach their dependencies, not only that it is alive. Default: none (`{}`).
   */
  health?: () => PartsHealth;
  /** How often the row is refreshed, in ms. Default 5000. */
  intervalMs?: number;
  /**
   * How long after its last beat any process's row (stopped or stale) is deleted, in ms: each
   * beat deletes what is older. Default 3 600 000 (an hour: long enough to see a crash).
   */
  retainMs?: number;
  /** Default: the machine's host name (a container's is its pod's name). */
  host?: string;
  /** Default: this process's pid. */
  pid?: number;
}

export interface ProcessHeartbeatEvents {
  /** The row was written (`at`, this process's clock) and rows older than the retention deleted. */
  beat: { at: number; pruned: number };
}

/**
 * Keeps this process's row in `processes`: written at start (before `start()` resolves), refreshed
 * every `intervalMs` and on each breaker change, with its breakers and its parts' health, marked
 * stopped on `stop()`, so a reader tells a clean stop from a crash. A failed write is reported as
 * an `error` event and retried at the next beat: a process unable to say it is alive goes on
 * working, and its row goes stale.
 */
export class ProcessHeartbeat extends ServiceBase<ProcessHeartbeatEvents> implements ReportsHealth {
  /** This process start's id: its row's key, a UUIDv7. */
  readonly id: string;
  readonly #db: Queryable;
  readonly #roles: string[];
  readonly #host: string;
  readonly #pid: number;
  readonly #policies: NamedPolicies;
  readonly #partsHealth: () => PartsHealth;
  // Each part's health as its beats last read it while it ran: for the row at the stop.
  #partsAsTheyRan: PartsHealth = {};
  readonly #intervalMs: number;
  readonly #retainMs: number;
  #startedAt: number;
  #timer: TimerHandle | undefined;
  #writing: Promise<void> | undefined;
  // A breaker changed while a write was on its way, which may have read the old state.
  #writeAgain = false;
  #listeners: ListenerHandle[] = [];
  readonly #health: HealthRecord<'database'>;

  constructor(options: ProcessHeartbeatOptions) {
    super('process-heartbeat', options.clock);
    const intervalMs = options.intervalMs ?? 5000;
    if (!Number.isInteger(intervalMs) || intervalMs <= 0)
      throw new InvalidArgumentError('intervalMs', 'an integer number of ms > 0', intervalMs);
    const retainMs = options.retainMs ?? 3_600_000;
    // Shorter, and a live process's row would be deleted before anyone could call it stale.
    if (!Number.isFinite(retainMs) || retainMs <= missedBeatsBeforeStale * intervalMs)
      throw new InvalidArgumentError(
        'retainMs',
        `a number of ms > ${missedBeatsBeforeStale} × intervalMs (${missedBeatsBeforeStale * intervalMs})`,
        retainMs,
      );
    this.#db = options.db;
    this.#roles = [...options.roles];
    this.#host = options.host ?? hostname();
    this.#pid = options.pid ?? process.pid;
    this.#policies = options.policies ?? {};
    this.#partsHealth = options.health ?? (() => ({}));
    this.#intervalMs = intervalMs;
    this.#retainMs = retainMs;
    // Known before start: the dashboard that runs beside it is wired with it.
    this.#startedAt = options.clock.now();
    this.id = uuidv7At(this.#startedAt);
    // A beat that has not answered by the time readers would call the row stale is a failure too.
    this.#health = new HealthRecord(options.clock, {
      database: { silentMs: missedBeatsBeforeStale * intervalMs },
    });
  }

  /**
   * Who this process is, as its row says (its start: the last `start()`, or when it was built
   * before one): for a reader that cannot read the row, such as this process's dashboard while
   * the database is down.
   */
  identity(): ProcessIdentity {
    return { roles: [...this.#roles], host: this.#host, pid: this.#pid, startedAt: this.#startedAt };
  }

  /** Failing while its beats fail, or none has answered for as long as makes its row stale. */
  health(): ServiceHealth {
    return this.#health.health(this.state);
  }

  /**
   * Writes the row now (after the write on its way, if any): for callers that cannot wait a beat.
   * Resolves once written or reported as an `error` event; does nothing unless the heartbeat is
   * starting or running, so a late call cannot bring back a row marked stopped, or never written.
   */
  beat(): Promise<void> {
    if (!this.#beating()) return Promise.resolve();
    if (this.#writing !== undefined) {
      this.#writeAgain = true;
      return this.#writing;
    }
    // Set before the first write reads the breakers: that read can move an open breaker to
    // half-open, whose event calls this again, which must find this write under way.
    let written!: () => void;
    this.#writing = new Promise<void>((resolve) => (written = resolve));
    void (async () => {
      try {
        do {
          this.#writeAgain = false;
          await this.#writeOnce();
        } while (this.#writeAgain && this.#beating());
      } finally {
        this.#writing = undefined;
        written();
      }
    })();
    return this.#writing;
  }

  protected override async onStart(): Promise<void> {
    this.#startedAt = this.clock.now();
    this.#health.started();
    this.#partsAsTheyRan = {};
    // Policies are complete by now: the shop adds the mailer's breaker after building this.
    for (const policy of Object.values(this.#policies)) {
      if (policy instanceof CircuitBreakerPolicy)
        this.#listeners.push(policy.on('stateChange', () => void this.beat()));
    }
    await this.beat();
    this.#schedule();
  }

  protected override async onStop(): Promise<void> {
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const listener of this.#listeners.splice(0)) listener.dispose();
    await this.#writing;
    await markProcessStopped(
      this.#db,
      this.id,
      this.clock.now(),
      this.#breakers(),
      partsHealthAsTheyRan(this.#readPartsHealth(), this.#partsAsTheyRan),
    );
  }

  #beating(): boolean {
    return this.state === 'starting' || this.state === 'running';
  }

  #schedule(): void {
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.beat().then(() => {
        if (this.state === 'running' && this.#timer === undefined) this.#schedule();
      });
    }, this.#intervalMs);
  }

  async #writeOnce(): Promise<void> {
    const at = this.clock.now();
    // Written as read, stopped parts and all (a beat while the process stops says so).
    const health = this.#readPartsHealth();
    this.#partsAsTheyRan = partsHealthAsTheyRan(health, this.#partsAsTheyRan);
    try {
      await writeHeartbeat(this.#db, {
        id: this.id,
        roles: this.#roles,
        host: this.#host,
        pid: this.#pid,
        startedAt: this.#startedAt,
        lastSeenAt: at,
        heartbeatMs: this.#intervalMs,
        breakers: this.#breakers(),
        health,
      });
      const pruned = await pruneProcesses(this.#db, at - this.#retainMs);
      this.#health.succeeded('database');
      this.events.emit('beat', { at, pruned });
    } catch (error) {
      this.#health.failed('database', error, 'beat');
      this.events.emit('error', { error, during: 'beat' });
    }
  }

  /**
   * The parts' health, or `{}` when it cannot be read: that is no failure of the beat's database
   * (its own health stays as its writes go), and the row is still worth refreshing.
   */
  #readPartsHealth(): PartsHealth {
    try {
      return this.#partsHealth();
    } catch (error) {
      this.events.emit('error', { error, during: 'read parts health' });
      return {};
    }
  }

  #breakers(): ProcessBreaker[] {
    return Object.entries(this.#policies).flatMap(([name, policy]) => {
      if (!(policy instanceof CircuitBreakerPolicy)) return [];
      const state = policy.state;
      return [
        state.status === 'open'
          ? { name, state: state.status, since: state.since, until: state.until, reason: state.reason }
          : { name, state: state.status, since: state.since },
      ];
    });
  }
}
