// The waits on one database handle share their work, so that waiting costs by the handle, not by
// the wait: an application that answers each request once its saga ends has as many waits as
// requests in flight. One watcher per handle (made by the first wait, torn down when the last one
// leaves) holds one LISTEN registration, reads every id due in one statement, and polls once per
// tick for all the waits that share a `pollMs` and a clock. A statement that fails on a row
// answers only the waits for the rows that fail; one that fails as a statement, all of its waits:
// see `#read`.
import type { Db, Queryable, Unlisten } from '../db/db.ts';
import { isKeelError } from '../errors/index.ts';
import type { ListenerHandle } from '../service/typed-events.ts';
import type { Clock, TimerHandle } from '../time/index.ts';
import type { SagaRunner } from './saga-runner.ts';
import { readWaitedInstances, sagaEndStates, type WaitedInstance } from './saga-store.ts';
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
   * A read that started while the waiter was registered answered: the instance's state, and the
   * instance once it has ended; undefined when there is none yet. Called synchronously from the
   * read; may settle the wait (which removes it). Called even when the wait has settled
   * meanwhile: ignore it then.
   */
  found(instance: WaitedInstance | undefined): void;
  /**
   * A read of its id failed with `error`: the statement that read it failed as a statement (a
   * lost connection, `isLostConnection`; a timeout; a missing table), which every id of the
   * statement gets, or its own row did (`isRowFailure`, or a row that could not be decoded).
   */
  readFailed(error: unknown): void;
}

/**
 * The failed reads a wait waits out, to read again at the next poll: a lost connection may come
 * back before the caller gives up. Any other error will not, and rejects the wait.
 */
export function isLostConnection(error: unknown): boolean {
  return isKeelError(error, 'KEEL_DB_UNAVAILABLE');
}

/**
 * A statement that failed on a row rather than as a statement: a data exception (SQLSTATE class
 * 22: a value the server cannot convert or encode, of a row or of an id) or corrupted data
 * (XX001). The other ids of the statement may be good, and reading them in parts finds the bad
 * ones. Any other failure — a missing table (42P01), a lost connection, a timeout, an error
 * without a SQLSTATE — is the statement's: reading its ids in parts would only repeat it.
 */
function isRowFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && (/^22[0-9A-Z]{3}$/.test(code) || code === 'XX001');
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

/** Ids read in one statement, each with the waiters registered for it when it was sent. */
type Batch = readonly [string, SagaEndWaiter[]][];

function failAll(batch: Batch, error: unknown): void {
  for (const [, waiters] of batch) for (const waiter of waiters) waiter.readFailed(error);
}

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
    const batch: Batch = ids.map((id): [string, SagaEndWaiter[]] => {
      this.#due.delete(id);
      return [id, [...(this.#waiters.get(id) ?? [])]];
    });
    this.#reading = this.#read(batch).finally(() => {
      this.#reading = undefined;
      this.#readDue();
    });
  }

  /**
   * Reads the ids of `batch` and answers their waiters. A statement that fails on a row
   * (`isRowFailure`) is searched for the rows that fail: see `#isolate`. One that fails as a
   * statement answers every waiter with its error (a lost connection is waited out, any other
   * rejects): the ids read in parts would fail the same way, one statement each.
   */
  async #read(batch: Batch): Promise<void> {
    const failed = await this.#readOnce(batch);
    if (failed === undefined) return;
    if (isRowFailure(failed.error)) await this.#isolate(batch, failed.error);
    else failAll(batch, failed.error);
  }

  /**
   * One statement for `batch`: answers its waiters and returns undefined (a row that cannot be
   * decoded answers its own waiters with the error, the statement having answered), or answers
   * none and returns the statement's error.
   */
  async #readOnce(batch: Batch): Promise<{ error: unknown } | undefined> {
    if (batch.length === 0) return undefined;
    const unreadable = new Map<string, unknown>();
    let found: Map<string, WaitedInstance>;
    try {
      found = await readWaitedInstances(
        this.#q,
        batch.map(([id]) => id),
        (id, error) => void unreadable.set(id, error),
      );
    } catch (error) {
      return { error };
    }
    for (const [id, waiters] of batch) {
      const bad = unreadable.has(id);
      for (const waiter of waiters) {
        if (bad) waiter.readFailed(unreadable.get(id));
        else waiter.found(found.get(id));
      }
    }
    // Some wait goes on: listen from now on. A wait whose first read finds its instance ended
    // costs that read alone.
    if (!this.#closed) this.#listening ??= this.#listen();
    return undefined;
  }

  /**
   * `batch`'s statement failed on a row (`error`): reads each half again, and halves in turn each
   * part that fails on a row too, down to the ids whose own read fails, so a bad row rejects its
   * own waits only. A part without a bad row answers at its first read, so k bad rows among n
   * ids cost at most 2·k·log2(n) statements more. A statement that fails as a statement (a lost
   * connection, a timeout) ends the search: every wait not answered yet gets its error at once.
   *
   * Waits that settled meanwhile (their timeout, their signal) drop out: their removal waits for
   * this read, which need not read their ids again. A part that failed is known bad only as it
   * was read: once some of its ids dropped out, the rest are read again, for the bad row may have
   * been one of those.
   */
  async #isolate(batch: Batch, error: unknown): Promise<void> {
    // The parts whose statement failed on a row, oldest first: each holds a bad row.
    const failing: { part: Batch; error: unknown }[] = [{ part: batch, error }];
    for (let next = failing.shift(); next !== undefined; next = failing.shift()) {
      const remaining = this.#stillWaiting(next.part);
      if (remaining.length === 0) continue;
      if (next.part.length === 1) {
        failAll(remaining, next.error);
        continue;
      }
      const half = Math.ceil(remaining.length / 2);
      const parts = [remaining.slice(0, half), remaining.slice(half)];
      for (const [index, part] of parts.entries()) {
        const still = this.#stillWaiting(part);
        const failed = await this.#readOnce(still);
        if (failed === undefined) continue;
        if (isRowFailure(failed.error)) {
          failing.push({ part: still, error: failed.error });
          continue;
        }
        // No row's failure: the waits still unanswered would meet it too.
        const unanswered = [still, ...parts.slice(index + 1), ...failing.map(({ part: bad }) => bad)];
        return failAll(this.#stillWaiting(unanswered.flat()), failed.error);
      }
    }
  }

  /** The entries of `batch` with the waiters still registered, and only those. */
  #stillWaiting(batch: Batch): [string, SagaEndWaiter[]][] {
    const remaining: [string, SagaEndWaiter[]][] = [];
    for (const [id, waiters] of batch) {
      const registered = this.#waiters.get(id);
      const still = registered === undefined ? [] : waiters.filter((waiter) => registered.has(waiter));
      if (still.length > 0) remaining.push([id, still]);
    }
    return remaining;
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
