import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Db, Unlisten } from '../db/db.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { ServiceBase } from '../service/service.ts';
import { HealthRecord, type ReportsHealth, type ServiceHealth } from '../service/service-health.ts';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import type { SagaDefinition } from './definition.ts';
import type { SagaRunnerEvents } from './events.ts';
import { claimSagas, extendLeases, type Fence, type SagaInstance } from './saga-store.ts';
import { SagaExecution } from './saga-execution.ts';
import { sagaChannel } from './schema.ts';
import type { StepScope } from './step-scope.ts';
import type { ListenerHandle } from '../service/typed-events.ts';
import { untilAborted } from '../service/until-aborted.ts';

export interface SagaRunnerOptions {
  db: Db;
  /**
   * Every definition this runner runs, all versions still in use: an instance runs only on a
   * runner that has its exact `name@version`, and is left alone by the others.
   */
  sagas: readonly SagaDefinition<never>[] | readonly SagaDefinition[];
  /** This runner's name in leases and history. Default `<hostname>:<pid>:<random>`. */
  owner?: string;
  clock?: Clock;
  /**
   * How long a lease lasts without a heartbeat, in ms: a crashed runner's instances are taken over
   * this long after its last heartbeat. Default 30 000.
   */
  leaseMs?: number;
  /** How often leases are extended, in ms. Default `leaseMs / 3`. */
  heartbeatMs?: number;
  /** How often to look for due instances (reply deadlines, expired leases) without a NOTIFY, in ms. Default 1 000. */
  pollMs?: number;
  /** Instances run at once. Default 10. */
  concurrency?: number;
  /** LISTEN for starts, replies and retries to wake at once. Default true. */
  listen?: boolean;
}

interface Task {
  fence: Fence;
  instance: SagaInstance;
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Runs saga instances from the database: leases due instances, runs their steps, records each
 * step's outcome before the next effect starts, compensates in reverse when a step fails for
 * good, and hands leases back on stop. Any number of runners may share a database: an instance
 * runs in one place at a time (leases with fencing), and a crashed runner's instances are taken
 * over once its leases expire.
 */
export class SagaRunner extends ServiceBase<SagaRunnerEvents> implements ReportsHealth {
  readonly owner: string;
  readonly #db: Db;
  readonly #definitions = new Map<string, SagaDefinition>();
  readonly #leaseMs: number;
  readonly #heartbeatMs: number;
  readonly #pollMs: number;
  readonly #concurrency: number;
  readonly #listen: boolean;
  readonly #tasks = new Map<string, Task>();
  /** Runs this runner leased its instance away from (see `#claim`), until they end: a stop waits for them too. */
  readonly #superseded = new Set<Task>();
  readonly #execution: SagaExecution;
  readonly #contact: HealthRecord<'database'>;
  #unlisten: Unlisten | undefined;
  #pollTimer: TimerHandle | undefined;
  #heartbeatTimer: TimerHandle | undefined;
  #polling: Promise<number> | undefined;
  /** The `runDue()` calls in flight, which a stop waits for, started or not. */
  readonly #dueRuns = new Set<Promise<number>>();
  /** Whether `runDue()` was ever called: its steps' timeout timers may be armed. */
  #ranDue = false;
  #again = false;
  #beating = false;
  #stopping = false;
  #scopes: readonly StepScope[] = [];

  constructor(options: SagaRunnerOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('options', 'an object { db, sagas }', options);
    }
    super('saga-runner', options.clock ?? systemClock);
    if (options.db === null || typeof options.db?.transaction !== 'function') {
      throw new InvalidArgumentError('db', 'a keel Db', options.db);
    }
    this.#db = options.db;
    if (!Array.isArray(options.sagas) || options.sagas.length === 0) {
      throw new InvalidArgumentError('sagas', 'a non-empty array of saga definitions', options.sagas);
    }
    (options.sagas as readonly SagaDefinition[]).forEach((saga, i) => {
      if (saga === null || typeof saga !== 'object' || typeof saga.key !== 'string') {
        throw new InvalidArgumentError(`sagas.${i}`, 'a definition from defineSaga', saga);
      }
      if (this.#definitions.has(saga.key)) {
        throw new InvalidArgumentError(`sagas.${i}`, `one definition per name@version (${saga.key} twice)`);
      }
      this.#definitions.set(saga.key, saga);
    });
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    if (typeof this.owner !== 'string' || this.owner === '') {
      throw new InvalidArgumentError('owner', 'a non-empty string', this.owner);
    }
    this.#leaseMs = positive('leaseMs', options.leaseMs ?? 30_000);
    this.#heartbeatMs = positive('heartbeatMs', options.heartbeatMs ?? this.#leaseMs / 3);
    if (this.#heartbeatMs >= this.#leaseMs) {
      throw new InvalidArgumentError(
        'heartbeatMs',
        `less than leaseMs (${this.#leaseMs})`,
        this.#heartbeatMs,
      );
    }
    this.#pollMs = positive('pollMs', options.pollMs ?? 1000);
    const concurrency = options.concurrency ?? 10;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new InvalidArgumentError('concurrency', 'an integer >= 1', concurrency);
    }
    this.#concurrency = concurrency;
    this.#listen = options.listen ?? true;
    // Silent past a lease and a poll: by then a working runner has polled or extended its leases.
    this.#contact = new HealthRecord(this.clock, { database: { silentMs: this.#leaseMs + this.#pollMs } });
    this.#execution = new SagaExecution(
      this.#db,
      this.clock,
      this.owner,
      this.events,
      () => this.#stopping,
      () => this.#scopes,
    );
  }

  /**
   * Runs `scope` around every step this runner runs from now on (see `StepScope`), until the
   * handle is disposed. `instrumentSagas` uses it to make each step's span the active one.
   */
  aroundSteps(scope: StepScope): ListenerHandle {
    this.#scopes = [...this.#scopes, scope];
    const dispose = (): void => {
      this.#scopes = this.#scopes.filter((s) => s !== scope);
    };
    return { dispose, [Symbol.dispose]: dispose };
  }

  /** Instances this runner holds right now. */
  get running(): number {
    return this.#tasks.size;
  }

  /**
   * Whether this runner reaches its database, from the outcome of its own polls and heartbeats:
   * 'failing' while they fail (or none answered for longer than `leaseMs + pollMs`), 'ok' again
   * after one succeeds. For a health endpoint; `error` events carry each failure. A read of
   * memory: no statement runs.
   */
  health(): ServiceHealth {
    return this.#contact.health(this.state);
  }

  protected async onStart(): Promise<void> {
    // Without its tables a runner would only report errors from every poll: refuse to start.
    const { rows } = await this.#db.query<{ missing: string[] }>(
      `SELECT array_remove(ARRAY[
         CASE WHEN to_regclass('keel_saga_instances') IS NULL THEN 'keel_saga_instances' END,
         CASE WHEN to_regclass('keel_saga_history') IS NULL THEN 'keel_saga_history' END], NULL) AS missing`,
    );
    this.#contact.started();
    this.#contact.succeeded('database');
    const missing = rows[0]?.missing ?? [];
    if (missing.length > 0) {
      throw new KeelError(
        'KEEL_SCHEMA_MISSING',
        `the saga runner needs ${missing.join(' and ')} in schema ${this.#db.schema}: run sagaMigrations first`,
      );
    }
    if (this.#listen) this.#unlisten = await this.#db.listen(sagaChannel, () => this.#wake());
    this.#scheduleHeartbeat();
    this.#wake();
  }

  protected async onStop(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    if (this.#pollTimer !== undefined) this.clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    await this.#handBack(
      drain,
      this.#unlisten?.().catch(() => undefined),
    );
  }

  /** Once the drain ended or its deadline passed: no heartbeat, no step timeout is left armed. */
  protected override async afterDrain(): Promise<void> {
    if (this.#heartbeatTimer !== undefined) this.clock.clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
    this.#execution.dispose();
  }

  /**
   * A runner never started that ran `runDue()` holds its steps' timeout timers, and perhaps calls
   * still in flight: its stop clears the timers, so a script that ran it can exit.
   */
  protected override hasWorkInHand(): boolean {
    return this.#ranDue;
  }

  /** As `onStop` for the `runDue()` calls in flight; the timers are cleared at the deadline at the latest. */
  protected override async onStopUnstarted(drain: AbortSignal): Promise<void> {
    this.#stopping = true;
    const handedBack = this.#handBack(drain);
    // Past the deadline the base class waits one more turn for the hand-back, and no afterDrain follows.
    await Promise.race([handedBack, untilAborted(drain)]);
    this.#execution.dispose();
    await handedBack;
  }

  /**
   * Leases what is due now and runs it until every instance it took finished or waits (a reply,
   * a deadline), repeating while there is more. Resolves with how many instances it ran. For
   * tests, scripts and the CLI: a started runner does this on its own. Leases are not extended
   * by heartbeats unless the runner is started. `stop()`, started or not, ends it as it ends a
   * started runner's work: it leases nothing more, each instance is handed back after its step in
   * hand, and the stop waits for that within its drain deadline (past it, the steps' signals
   * abort). After `stop()` it leases nothing and resolves with 0.
   */
  runDue(): Promise<number> {
    this.#ranDue = true;
    const run = this.#runDue();
    this.#dueRuns.add(run);
    const settled = (): void => void this.#dueRuns.delete(run);
    void run.then(settled, settled);
    return run;
  }

  async #runDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const launched = await this.#claim();
      total += launched.length;
      await Promise.all(launched.map((task) => task.done));
      if (launched.length === 0) return total;
    }
  }

  /**
   * Waits, once `#stopping` is set, for `first` (the LISTEN connection closing), then the poll and
   * the `runDue()` calls in flight (which lease nothing more) and the instances they run, each
   * handed back after its step in hand. At the drain deadline, `first` done or not, the
   * instances' signals abort, to be handed back unfinished.
   */
  async #handBack(drain: AbortSignal, first?: Promise<void>): Promise<void> {
    const abort = (): void => {
      for (const task of this.#tasks.values()) task.controller.abort(drain.reason);
    };
    drain.addEventListener('abort', abort, { once: true });
    try {
      await first;
      await this.#polling?.catch(() => undefined);
      // A claim in flight still launches what it leased: those instances are in #tasks after it.
      await Promise.all([...this.#dueRuns].map((run) => run.catch(() => undefined)));
      await Promise.all([...this.#tasks.values(), ...this.#superseded].map((task) => task.done));
    } finally {
      drain.removeEventListener('abort', abort);
    }
  }

  #wake(): void {
    if (this.#stopping) return;
    if (this.#polling !== undefined) {
      this.#again = true;
      return;
    }
    this.#polling = this.#poll().finally(() => {
      this.#polling = undefined;
      if (this.#again) {
        this.#again = false;
        this.#wake();
      }
    });
  }

  async #poll(): Promise<number> {
    if (this.#pollTimer !== undefined) this.clock.clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    let launched = 0;
    try {
      launched = (await this.#claim()).length;
    } catch (error) {
      this.events.emit('error', { error, during: 'saga poll' });
    }
    if (!this.#stopping) this.#pollTimer = this.clock.setTimeout(() => this.#wake(), this.#pollMs);
    return launched;
  }

  async #claim(): Promise<Task[]> {
    const free = this.#concurrency - this.#tasks.size;
    // 'stopped' too: a runner never started and stopped with nothing in hand never set #stopping.
    if (free <= 0 || this.#stopping || this.state === 'stopped') return [];
    const claimed = await claimSagas(this.#db, {
      owner: this.owner,
      keys: [...this.#definitions.keys()],
      limit: free,
      now: this.clock.now(),
      leaseMs: this.#leaseMs,
    }).catch((error: unknown) => {
      this.#contact.failed('database', error, 'saga poll');
      throw error;
    });
    this.#contact.succeeded('database');
    return claimed.map(({ instance, takenFrom }) => {
      const fence: Fence = { id: instance.id, owner: this.owner, epoch: instance.leaseEpoch };
      const controller = new AbortController();
      const definition = this.#definitions.get(`${instance.saga}@${instance.version}`)!;
      // Its lease ran out while this runner still ran it (the heartbeats failed): the old run is
      // fenced off by the new epoch, so tell its step at once; the new run is the one to keep.
      const superseded = this.#tasks.get(instance.id);
      if (superseded !== undefined) {
        this.#superseded.add(superseded);
        void superseded.done.finally(() => this.#superseded.delete(superseded));
        superseded.controller.abort(this.#execution.leaseLost(superseded.instance));
      }
      if (this.events.has('claimed')) {
        this.events.emit('claimed', {
          instanceId: instance.id,
          saga: instance.saga,
          version: instance.version,
          takenFrom,
        });
      }
      const task: Task = {
        fence,
        instance,
        controller,
        done: this.#execution
          .run(definition, instance, fence, controller.signal)
          .catch((error: unknown) => this.events.emit('error', { error, during: `saga ${instance.id}` }))
          .finally(() => {
            // Not a newer run of the same instance, which took this one's place.
            if (this.#tasks.get(instance.id) === task) this.#tasks.delete(instance.id);
            // A slot is free: take the next due instance now rather than at the next poll.
            if (this.state === 'running') this.#wake();
          }),
      };
      this.#tasks.set(instance.id, task);
      return task;
    });
  }

  #scheduleHeartbeat(): void {
    // A steady cadence, re-armed when the timer fires rather than when the query ends, so a slow
    // database does not stretch the gaps between extensions; a beat still running skips the next.
    this.#heartbeatTimer = this.clock.setTimeout(() => {
      this.#scheduleHeartbeat();
      if (this.#beating) return;
      this.#beating = true;
      void this.#heartbeat().finally(() => {
        this.#beating = false;
      });
    }, this.#heartbeatMs);
  }

  async #heartbeat(): Promise<void> {
    const tasks = [...this.#tasks.values()];
    if (tasks.length === 0) return;
    try {
      const held = await extendLeases(
        this.#db,
        this.owner,
        tasks.map((t) => ({ id: t.fence.id, epoch: t.fence.epoch })),
        this.clock.now() + this.#leaseMs,
      );
      this.#contact.succeeded('database');
      for (const task of tasks) {
        // A task that finished meanwhile released its lease itself; only a running one was lost.
        if (!held.has(task.fence.id) && this.#tasks.get(task.fence.id) === task) {
          task.controller.abort(this.#execution.leaseLost(task.instance));
        }
      }
    } catch (error) {
      this.#contact.failed('database', error, 'saga heartbeat');
      this.events.emit('error', { error, during: 'saga heartbeat' });
    }
  }
}

function positive(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new InvalidArgumentError(field, 'a number of ms > 0', value);
  return value;
}
