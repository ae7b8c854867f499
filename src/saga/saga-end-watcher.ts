// The waits on one database handle share their work, so that waiting costs by the handle, not by
// the wait: an application that answers each request once its saga ends has as many waits as
// requests in flight. One watcher per handle (made by the first wait, torn down when the last one
// leaves) holds one LISTEN registration, reads every id due in one statement, and polls once per
// tick for all the waits that share a `pollMs` and a clock.
import type { Db, Queryable, Unlisten } from '../db/db.ts';
import type { ListenerHandle } from '../service/typed-events.ts';
import type { Clock, TimerHandle } from '../time/index.ts';
import type { SagaRunner } from './saga-runner.ts';
import { readInstances, sagaEndStates, type SagaInstance } from './saga-store.ts';
import { sagaEndedChannel } from './schema.ts';

/** One wait as the watcher sees it: what to read, how often, and where the answers go. */
export interface SagaEndWaiter {
  readonly id: string;
  /** The wait is read at least this often; waits with the same `pollMs` and clock share the tick. */
  readonly pollMs: number;
  readonly clock: Clock;
  /** Its `saga-state` events wake the read of the ids they end. */
  readonly runner: SagaRunner | undefined;
  /**
   * A read that started while the waiter was registered answered: the instance, or undefined when
   * there is none yet. Called synchronously from the read; may settle the wait (which removes it).
   * Called even when the wait has settled meanwhile: ignore it then.
   */
  found(instance: SagaInstance | undefined): void;
  /** A read of its id failed with `error` (the whole statement did: every id in it gets the same). */
  readFailed(error: unknown): void;
}

/**
 * Registers `waiter` with the watcher of `q` (made on first use) and reads its id soon. Returns
 * the removal: it stops reading and waking for `waiter` at once, and resolves once the statement
 * in flight has settled and, for the last waiter, the LISTEN has been stopped, so that nothing
 * outlives the wait (its caller may close the database next). The removal never rejects.
 */
export function watchSagaEnd(q: Queryable, waiter: SagaEndWaiter): () => Promise<void> {
  let watcher = watchers.get(q);
  if (watcher === undefined) {
    watcher = new SagaEndWatcher(q);
    watchers.set(q, watcher);
  }
  const registeredWith = watcher;
  registeredWith.add(waiter);
  return () => registeredWith.remove(waiter);
}

/**
 * By handle: a `Db`, or another `Queryable` (a pool client), which has no LISTEN and shares only
 * its reads. Weak, so a handle dropped without its waits settling is not kept alive.
 */
const watchers = new WeakMap<Queryable, SagaEndWatcher>();

/**
 * Ids per statement: past it, the others are read by the next statement, at once. Bounds the
 * size of one answer when waits run into the thousands.
 */
const maxIdsPerRead = 1000;

interface PollGroup {
  readonly waiters: Set<SagaEndWaiter>;
  timer: TimerHandle | undefined;
}

/** Reads one statement at a time; ids woken during a read are read by the next, together. */
class SagaEndWatcher {
  readonly #q: Queryable;
  readonly #waiters = new Map<string, Set<SagaEndWaiter>>();
  /** The ids to read with the next statement. */
  readonly #due = new Set<string>();
  readonly #polls = new Map<Clock, Map<number, PollGroup>>();
  readonly #runners = new Map<SagaRunner, { handle: ListenerHandle; waiters: number }>();
  #readQueued = false;
  #reading: Promise<void> | undefined;
  #listening: Promise<Unlisten | undefined> | undefined;
  #closed = false;

  constructor(q: Queryable) {
    this.#q = q;
  }

  add(waiter: SagaEndWaiter): void {
    let same = this.#waiters.get(waiter.id);
    if (same === undefined) this.#waiters.set(waiter.id, (same = new Set()));
    same.add(waiter);
    this.#joinPoll(waiter);
    this.#followRunner(waiter.runner);
    // Read even when a read of this id is in flight: it may have started before the call.
    this.#due.add(waiter.id);
    this.#scheduleRead();
  }

  remove(waiter: SagaEndWaiter): Promise<void> {
    const same = this.#waiters.get(waiter.id);
    if (same?.delete(waiter) !== true) return Promise.resolve();
    if (same.size === 0) {
      this.#waiters.delete(waiter.id);
      this.#due.delete(waiter.id);
    }
    this.#leavePoll(waiter);
    this.#unfollowRunner(waiter.runner);
    const reading = this.#reading?.catch(() => undefined);
    if (this.#waiters.size > 0) return reading ?? Promise.resolve();
    return this.#close(reading);
  }

  /** After the last waiter left: a wait that comes later makes a new watcher. */
  async #close(reading: Promise<void> | undefined): Promise<void> {
    this.#closed = true;
    if (watchers.get(this.#q) === this) watchers.delete(this.#q);
    await reading;
    // Read after the read in flight settled: a closed watcher starts no LISTEN, but one may be under way.
    const unlisten = await this.#listening;
    await unlisten?.().catch(() => undefined);
  }

  /** A notification or a runner's event: reads `id` if a wait is for it. */
  #wake(id: string): void {
    if (this.#closed || !this.#waiters.has(id)) return;
    this.#due.add(id);
    this.#scheduleRead();
  }

  /** In a microtask, so that the waits of one turn (a `Promise.all` of them) share the first read. */
  #scheduleRead(): void {
    if (this.#readQueued || this.#reading !== undefined || this.#closed) return;
    this.#readQueued = true;
    queueMicrotask(() => {
      this.#readQueued = false;
      this.#readDue();
    });
  }

  #readDue(): void {
    if (this.#closed || this.#reading !== undefined || this.#due.size === 0) return;
    const ids: string[] = [];
    for (const id of this.#due) {
      ids.push(id);
      if (ids.length === maxIdsPerRead) break;
    }
    // The waiters as the statement is sent: one registered later gets a read of its own.
    const batch = ids.map((id): [string, SagaEndWaiter[]] => {
      this.#due.delete(id);
      return [id, [...(this.#waiters.get(id) ?? [])]];
    });
    this.#reading = this.#read(ids, batch).finally(() => {
      this.#reading = undefined;
      this.#readDue();
    });
  }

  async #read(ids: readonly string[], batch: readonly [string, SagaEndWaiter[]][]): Promise<void> {
    let found: Map<string, SagaInstance>;
    try {
      found = await readInstances(this.#q, ids);
    } catch (error) {
      for (const [, waiters] of batch) for (const waiter of waiters) waiter.readFailed(error);
      return;
    }
    for (const [id, waiters] of batch) for (const waiter of waiters) waiter.found(found.get(id));
    // Some wait goes on: listen from now on. A wait whose first read finds its instance ended
    // costs that read alone.
    if (!this.#closed) this.#listening ??= this.#listen();
  }

  async #listen(): Promise<Unlisten | undefined> {
    const listen = (this.#q as Partial<Db>).listen;
    if (typeof listen !== 'function') return undefined;
    let unlisten: Unlisten;
    try {
      unlisten = await listen.call(this.#q, sagaEndedChannel, (payload) => this.#wake(payload));
    } catch {
      // Without notifications the poll still finds the end, later.
      return undefined;
    }
    // An end committed between a wait's read and the LISTEN was not notified: read them all again.
    if (!this.#closed) {
      for (const id of this.#waiters.keys()) this.#due.add(id);
      this.#scheduleRead();
    }
    return unlisten;
  }

  #joinPoll(waiter: SagaEndWaiter): void {
    let byMs = this.#polls.get(waiter.clock);
    if (byMs === undefined) this.#polls.set(waiter.clock, (byMs = new Map<number, PollGroup>()));
    let group = byMs.get(waiter.pollMs);
    if (group === undefined) {
      group = { waiters: new Set(), timer: undefined };
      byMs.set(waiter.pollMs, group);
      this.#armPoll(waiter.clock, waiter.pollMs, group);
    }
    group.waiters.add(waiter);
  }

  /** Every `pollMs`, since a notification is lost while the LISTEN connection reconnects. */
  #armPoll(clock: Clock, pollMs: number, group: PollGroup): void {
    group.timer = clock.setTimeout(() => {
      for (const waiter of group.waiters) this.#due.add(waiter.id);
      this.#armPoll(clock, pollMs, group);
      this.#scheduleRead();
    }, pollMs);
  }

  #leavePoll(waiter: SagaEndWaiter): void {
    const byMs = this.#polls.get(waiter.clock);
    const group = byMs?.get(waiter.pollMs);
    if (byMs === undefined || group === undefined) return;
    group.waiters.delete(waiter);
    if (group.waiters.size > 0) return;
    if (group.timer !== undefined) waiter.clock.clearTimeout(group.timer);
    byMs.delete(waiter.pollMs);
    if (byMs.size === 0) this.#polls.delete(waiter.clock);
  }

  /** One listener per runner, however many waits passed it: each event costs one lookup. */
  #followRunner(runner: SagaRunner | undefined): void {
    if (runner === undefined) return;
    const followed = this.#runners.get(runner);
    if (followed !== undefined) {
      followed.waiters += 1;
      return;
    }
    const handle = runner.events.on('saga-state', (event) => {
      if (sagaEndStates.includes(event.to)) this.#wake(event.instanceId);
    });
    this.#runners.set(runner, { handle, waiters: 1 });
  }

  #unfollowRunner(runner: SagaRunner | undefined): void {
    const followed = runner === undefined ? undefined : this.#runners.get(runner);
    if (runner === undefined || followed === undefined) return;
    followed.waiters -= 1;
    if (followed.waiters > 0) return;
    followed.handle.dispose();
    this.#runners.delete(runner);
  }
}
