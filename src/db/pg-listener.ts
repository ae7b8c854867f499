import type pg from 'pg';
import type { Clock, TimerHandle } from '../time/index.ts';
import type { Unlisten } from './db.ts';
import { quoteIdentifier } from './identifiers.ts';
import { SerialQueue } from './serial-queue.ts';

export interface PgListenerOptions {
  /** Opens a new connection outside the pool; rejects with `KEEL_DB_UNAVAILABLE`. */
  connect: () => Promise<pg.Client>;
  clock: Clock;
  backoffInitialMs: number;
  backoffMaxMs: number;
}

type Callback = (payload: string) => void;

/**
 * LISTEN on one dedicated connection, shared by every `listen()` of a `PgDb`. When the connection
 * drops, it reconnects with doubling backoff and LISTENs again on every channel. Notifications sent
 * while it was down are lost; listeners poll as well (see `Db.listen`).
 */
export class PgListener {
  readonly #options: PgListenerOptions;
  readonly #channels = new Map<string, Set<Callback>>();
  readonly #queue = new SerialQueue();
  #client: pg.Client | undefined;
  #retry: TimerHandle | undefined;
  #failures = 0;
  #closed = false;
  #reconnects = 0;

  constructor(options: PgListenerOptions) {
    this.#options = options;
  }

  /** How many times the connection was re-established after a drop. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Whether a connection is up and LISTENing. */
  get connected(): boolean {
    return this.#client !== undefined;
  }

  /** The backend pid of the listening connection, if connected: lets tests kill it. */
  get backendPid(): number | undefined {
    return (this.#client as { processID?: number } | undefined)?.processID;
  }

  /** Registers `callback`; the first call connects, and rejects with `KEEL_DB_UNAVAILABLE` if that fails. */
  add(channel: string, callback: Callback): Promise<Unlisten> {
    return this.#queue.run(async () => {
      const client = this.#client ?? (await this.#connect());
      let callbacks = this.#channels.get(channel);
      if (callbacks === undefined) {
        await client.query(`LISTEN ${quoteIdentifier(channel)}`);
        callbacks = new Set();
        this.#channels.set(channel, callbacks);
      }
      // A wrapper per registration, so the same function registered twice is removed once per unlisten.
      const entry: Callback = (payload) => callback(payload);
      callbacks.add(entry);
      let removed = false;
      return () => {
        if (removed) return Promise.resolve();
        removed = true;
        return this.#remove(channel, entry);
      };
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    if (this.#retry !== undefined) this.#options.clock.clearTimeout(this.#retry);
    this.#retry = undefined;
    return this.#queue.run(async () => {
      const client = this.#client;
      this.#client = undefined;
      this.#channels.clear();
      await client?.end().catch(() => undefined);
    });
  }

  #remove(channel: string, entry: Callback): Promise<void> {
    return this.#queue.run(async () => {
      const callbacks = this.#channels.get(channel);
      if (callbacks === undefined || !callbacks.delete(entry) || callbacks.size > 0) return;
      this.#channels.delete(channel);
      // A dropped connection already forgot the LISTEN; the next reconnect will not renew it.
      await this.#client?.query(`UNLISTEN ${quoteIdentifier(channel)}`).catch(() => undefined);
    });
  }

  async #connect(): Promise<pg.Client> {
    const client = await this.#options.connect();
    try {
      for (const channel of this.#channels.keys()) await client.query(`LISTEN ${quoteIdentifier(channel)}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    client.on('notification', (message) => this.#deliver(message));
    const lost = (): void => this.#lost(client);
    client.on('error', lost);
    client.on('end', lost);
    this.#client = client;
    return client;
  }

  #deliver(message: pg.Notification): void {
    const callbacks = this.#channels.get(message.channel);
    if (callbacks === undefined) return;
    for (const callback of callbacks) {
      try {
        callback(message.payload ?? '');
      } catch (error) {
        // A throwing listener is a bug in the listener: surface it, keep delivering to the others.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    if (!this.#closed && this.#channels.size > 0) this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#retry !== undefined || this.#closed) return;
    const delay = Math.min(this.#options.backoffMaxMs, this.#options.backoffInitialMs * 2 ** this.#failures);
    this.#retry = this.#options.clock.setTimeout(() => {
      this.#retry = undefined;
      void this.#queue.run(async () => {
        if (this.#closed || this.#client !== undefined || this.#channels.size === 0) return;
        try {
          await this.#connect();
          this.#failures = 0;
          this.#reconnects += 1;
        } catch {
          this.#failures = Math.min(this.#failures + 1, 30);
          this.#scheduleReconnect();
        }
      });
    }, delay);
  }
}
