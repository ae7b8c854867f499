import type { Redis } from 'ioredis';

/**
 * One Pub/Sub connection per broker that tells waiting sources "something was published to your
 * destination", the way NOTIFY does for the PostgreSQL queue. A hint only: a lost signal costs at
 * most one poll interval, never a message, because every source also polls.
 *
 * It resubscribes after a reconnect itself, not by ioredis's `autoResubscribe`, whose SUBSCRIBE
 * nobody awaits: a connection closed before it was answered (the broker closing right after a
 * reconnect) rejected it as an unhandled promise. Signals sent while the connection was down are
 * lost, so every listener is woken once when it comes back.
 */
export class WakeSubscriber {
  readonly #create: () => Redis;
  readonly #listeners = new Map<string, Set<(signal: string) => void>>();
  #client: Redis | undefined;
  #ready = false;

  constructor(create: () => Redis) {
    this.#create = create;
  }

  /**
   * Calls `listener` with each signal's text (`''` after a publish, `release`, and `reconnect`
   * after the connection came back) until the returned function is called.
   */
  async subscribe(channel: string, listener: (signal: string) => void): Promise<() => Promise<void>> {
    const client = this.#connection();
    let set = this.#listeners.get(channel);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(channel, set);
      await client.subscribe(channel);
    }
    set.add(listener);
    return async () => {
      const current = this.#listeners.get(channel);
      if (current === undefined || !current.delete(listener) || current.size > 0) return;
      this.#listeners.delete(channel);
      if (this.#client !== undefined && this.#client.status === 'ready') {
        await this.#client.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#listeners.clear();
    if (client === undefined) return;
    try {
      await client.quit();
    } catch {
      client.disconnect();
    }
  }

  #connection(): Redis {
    if (this.#client !== undefined) return this.#client;
    const client = this.#create();
    client.options.autoResubscribe = false;
    // Errors surface through the commands that fail; an unhandled 'error' event would crash.
    client.on('error', () => undefined);
    client.on('message', (channel: string, signal: string) => {
      for (const listener of this.#listeners.get(channel) ?? []) listener(signal);
    });
    client.on('ready', () => {
      if (this.#ready) {
        const channels = [...this.#listeners.keys()];
        // A failure is a lost hint, made up for by polling; the next reconnect subscribes again.
        if (channels.length > 0) client.subscribe(...channels).catch(() => undefined);
        for (const set of this.#listeners.values()) for (const listener of set) listener('reconnect');
      }
      this.#ready = true;
    });
    this.#client = client;
    return client;
  }
}
