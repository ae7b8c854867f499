import type { Db, Queryable, QueryResult, Row, TransactionOptions, Tx } from '../db/index.ts';
import { InvalidArgumentError, KeelError, isKeelError } from '../errors/index.ts';
import { TypedEvents, type Listener, type ListenerHandle } from '../service/typed-events.ts';
import { sleep, systemClock, type Clock } from '../time/index.ts';
import { ConsistencyToken, currentToken, tokenAfterCommit } from './consistency-token.ts';

export interface ReadYourWritesOptions {
  /** Takes every write, and the reads the replica cannot serve yet. Required. */
  primary: Db;
  /**
   * A streaming hot standby of `primary`. Omitted (or the same `Db` as `primary`): every read goes
   * to the primary, as on PGlite, which has no replicas. Default: none.
   */
  replica?: Db;
  /**
   * How long a read with a token waits for the replica to replay that far before it goes to the
   * primary instead. `0` never waits. Per read: `ReadOptions.maxReplicaWaitMs`. Default 0.
   */
  maxReplicaWaitMs?: number;
  /** While waiting, how often the replica's replay position is asked. Default 10 ms. */
  pollIntervalMs?: number;
  /**
   * A read that finds the replica unreachable (`KEEL_DB_UNAVAILABLE`) is served by the primary
   * instead of failing. Default true.
   */
  fallbackOnReplicaDown?: boolean;
  /** Times the waiting. Default the system clock. */
  clock?: Clock;
}

export interface ReadOptions {
  /** The token of the caller's last write. Without one, the read goes to the replica. */
  token?: ConsistencyToken | undefined;
  /** Overrides the router's `maxReplicaWaitMs` for this read. */
  maxReplicaWaitMs?: number;
  /** Ends a wait for the replica at once with `AbortedError`. */
  signal?: AbortSignal;
}

/** Why a read went where it went. */
export type ReadReason =
  /** No token: any replica state is good enough. */
  | 'no-token'
  /** The replica had replayed the token's position (after `waitedMs` of waiting). */
  | 'replica-caught-up'
  /** There is no replica (PGlite, or none configured). */
  | 'no-replica'
  /** The replica had not replayed the token's position, within the wait if there was one. */
  | 'replica-behind'
  /** The replica is not a standby (`pg_last_wal_replay_lsn()` is NULL), so its position says nothing. */
  | 'replica-not-standby'
  /** The replica could not be reached; `fallbackOnReplicaDown`. */
  | 'replica-down';

export interface ReadEvent {
  servedBy: 'primary' | 'replica';
  reason: ReadReason;
  /**
   * Time spent waiting for the replica to replay the token (clock milliseconds), from the first
   * check that found it behind; 0 when the read did not wait.
   */
  waitedMs: number;
  token: ConsistencyToken | undefined;
}

export interface ReadYourWritesEvents {
  /** After every read, before its result is returned. */
  read: ReadEvent;
}

/** A write's result and the token a later read passes to see it. */
export interface Written<T> {
  value: T;
  token: ConsistencyToken;
}

function nonNegative(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(field, 'a finite number >= 0', value);
  }
  return value;
}

/** The replica's replay position inside its own read; `null` when it is no standby. */
const replayPositionSql = 'SELECT pg_last_wal_replay_lsn()::text AS lsn';

type Attempt<T> = { ok: true; value: T } | { ok: false; position: ConsistencyToken | undefined };

/**
 * Routes reads between a primary and a replica so a client reads its own writes: every write
 * returns a `ConsistencyToken`; a read that carries one is served by the replica only once the
 * replica has replayed that far, otherwise by the primary (after waiting up to
 * `maxReplicaWaitMs` for the replica, by option). A read without a token goes to the replica.
 *
 * The check and the read run in one transaction on one replica connection, the read's statements
 * after the check: at READ COMMITTED each statement takes a snapshot that includes everything
 * replayed before it, so the read sees the write even when the replica `Db` is a pool behind a
 * load balancer over several replicas.
 *
 * Does not own the two `Db`s: close them yourself. Safe for concurrent use.
 */
export class ReadYourWritesDb {
  readonly primary: Db;
  readonly replica: Db | undefined;
  readonly events = new TypedEvents<ReadYourWritesEvents>();
  readonly #maxWaitMs: number;
  readonly #pollMs: number;
  readonly #fallback: boolean;
  readonly #clock: Clock;

  constructor(options: ReadYourWritesOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('options', 'an options object', options);
    }
    if (typeof options.primary?.transaction !== 'function') {
      throw new InvalidArgumentError('primary', 'a Db', options.primary);
    }
    if (options.replica !== undefined && typeof options.replica?.transaction !== 'function') {
      throw new InvalidArgumentError('replica', 'a Db or undefined', options.replica);
    }
    this.primary = options.primary;
    this.replica = options.replica === options.primary ? undefined : options.replica;
    this.#maxWaitMs = nonNegative('maxReplicaWaitMs', options.maxReplicaWaitMs, 0);
    const poll = nonNegative('pollIntervalMs', options.pollIntervalMs, 10);
    if (poll === 0) throw new InvalidArgumentError('pollIntervalMs', 'a number > 0', poll);
    this.#pollMs = poll;
    this.#fallback = options.fallbackOnReplicaDown ?? true;
    this.#clock = options.clock ?? systemClock;
  }

  on<K extends keyof ReadYourWritesEvents>(
    name: K,
    listener: Listener<ReadYourWritesEvents[K]>,
  ): ListenerHandle {
    return this.events.on(name, listener);
  }

  /**
   * Runs `fn` in a transaction on the primary and, once it committed, reads its token. If reading
   * the token fails (the primary went away right after the commit), the write is committed
   * nevertheless: the error says so.
   */
  async write<T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions): Promise<Written<T>> {
    let token: Promise<ConsistencyToken> | undefined;
    const value = await this.primary.transaction((tx) => {
      token = tokenAfterCommit(tx, this.primary);
      return fn(tx);
    }, options);
    return { value, token: await this.#tokenAfterCommit(token) };
  }

  /**
   * The token of everything committed on the primary so far. For writes made through other code
   * (a use case that opens its own `db.transaction` on the primary): call it after they returned.
   */
  token(): Promise<ConsistencyToken> {
    return currentToken(this.primary);
  }

  /**
   * Runs the read `fn` where `options.token` says it may run (see the class). `fn` may run more
   * than once only if a replica that was reachable drops mid-read and the read falls back to the
   * primary, so keep it free of side effects.
   */
  async read<T>(fn: (db: Queryable) => Promise<T>, options: ReadOptions = {}): Promise<T> {
    const token = options.token;
    if (token !== undefined && !(token instanceof ConsistencyToken)) {
      throw new InvalidArgumentError('token', 'a ConsistencyToken (ConsistencyToken.parse)', token);
    }
    const replica = this.replica;
    if (replica === undefined) return this.#onPrimary(fn, 'no-replica', 0, token);
    if (token === undefined) {
      try {
        const value = await fn(replica);
        this.#emit('replica', 'no-token', 0, token);
        return value;
      } catch (error) {
        if (!this.#isReplicaDown(error)) throw error;
        return this.#onPrimary(fn, 'replica-down', 0, token);
      }
    }
    const maxWaitMs = nonNegative('maxReplicaWaitMs', options.maxReplicaWaitMs, this.#maxWaitMs);
    const started = this.#clock.now();
    let waitStarted: number | undefined;
    let attempt: Attempt<T>;
    try {
      attempt = await this.#tryReplica(replica, token, fn);
      if (!attempt.ok && attempt.position !== undefined && maxWaitMs > 0) {
        waitStarted = this.#clock.now();
        const caughtUp = await this.#waitForReplay(replica, token, started + maxWaitMs, options.signal);
        // Once more in a transaction: the position that was polled may be another server's.
        if (caughtUp) attempt = await this.#tryReplica(replica, token, fn);
      }
    } catch (error) {
      if (!this.#isReplicaDown(error)) throw error;
      return this.#onPrimary(fn, 'replica-down', this.#waited(waitStarted), token);
    }
    const waitedMs = this.#waited(waitStarted);
    if (attempt.ok) {
      this.#emit('replica', 'replica-caught-up', waitedMs, token);
      return attempt.value;
    }
    const reason = attempt.position === undefined ? 'replica-not-standby' : 'replica-behind';
    return this.#onPrimary(fn, reason, waitedMs, token);
  }

  #waited(since: number | undefined): number {
    return since === undefined ? 0 : this.#clock.now() - since;
  }

  /** `read` of one statement. */
  query<R = Row>(sql: string, params?: readonly unknown[], options?: ReadOptions): Promise<QueryResult<R>> {
    return this.read((db) => db.query<R>(sql, params), options);
  }

  /** How far the replica has replayed: `undefined` without a replica or when it is no standby. */
  async replicaPosition(): Promise<ConsistencyToken | undefined> {
    if (this.replica === undefined) return undefined;
    return positionOf(this.replica);
  }

  async #tryReplica<T>(
    replica: Db,
    token: ConsistencyToken,
    fn: (db: Queryable) => Promise<T>,
  ): Promise<Attempt<T>> {
    return replica.transaction(async (tx): Promise<Attempt<T>> => {
      const position = await positionOf(tx);
      if (position === undefined || !position.covers(token)) return { ok: false, position };
      return { ok: true, value: await fn(tx) };
    });
  }

  /** Polls the replica's position until it covers `token` (true) or the deadline passed (false). */
  async #waitForReplay(
    replica: Db,
    token: ConsistencyToken,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    for (;;) {
      const remaining = deadline - this.#clock.now();
      if (remaining <= 0) return false;
      await sleep(Math.min(this.#pollMs, remaining), { clock: this.#clock, signal });
      const position = await positionOf(replica);
      if (position === undefined) return false;
      if (position.covers(token)) return true;
    }
  }

  async #onPrimary<T>(
    fn: (db: Queryable) => Promise<T>,
    reason: ReadReason,
    waitedMs: number,
    token: ConsistencyToken | undefined,
  ): Promise<T> {
    const value = await fn(this.primary);
    this.#emit('primary', reason, waitedMs, token);
    return value;
  }

  async #tokenAfterCommit(token: Promise<ConsistencyToken> | undefined): Promise<ConsistencyToken> {
    try {
      return await (token ?? currentToken(this.primary));
    } catch (error) {
      throw new KeelError(
        isKeelError(error) ? error.code : 'KEEL_INTERNAL',
        `the write committed, but its consistency token could not be read: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  #isReplicaDown(error: unknown): boolean {
    return this.#fallback && isKeelError(error, 'KEEL_DB_UNAVAILABLE');
  }

  #emit(
    servedBy: ReadEvent['servedBy'],
    reason: ReadReason,
    waitedMs: number,
    token: ConsistencyToken | undefined,
  ): void {
    if (this.events.has('read')) this.events.emit('read', { servedBy, reason, waitedMs, token });
  }
}

async function positionOf(db: Queryable): Promise<ConsistencyToken | undefined> {
  const { rows } = await db.query<{ lsn: string | null }>(replayPositionSql);
  const lsn = rows[0]?.lsn;
  return lsn === null || lsn === undefined
    ? undefined
    : ConsistencyToken.parse(lsn, 'pg_last_wal_replay_lsn()');
}
