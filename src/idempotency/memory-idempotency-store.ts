import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../time/index.ts';
import type { BeginOutcome, BeginRequest, IdempotencyStore, StoredResponse } from './idempotency-store.ts';

interface Entry {
  fingerprint: string;
  token: string;
  lockedUntil: number;
  expiresAt: number;
  ttlMs: number;
  response: StoredResponse | undefined;
}

/** In-process keys: for tests and single-process use. Nothing survives a restart. */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>();
  readonly #clock: Clock;

  constructor(options: { clock?: Clock } = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  /** How many keys it holds, expired ones not yet forgotten included. */
  get size(): number {
    return this.#entries.size;
  }

  async begin(request: BeginRequest): Promise<BeginOutcome> {
    const now = this.#clock.now();
    this.#forgetExpired(now);
    const id = `${request.scope}\u0000${request.key}`;
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.expiresAt > now) {
      if (entry.fingerprint !== request.fingerprint) return { kind: 'mismatch' };
      if (entry.response !== undefined) return { kind: 'replay', response: entry.response };
      if (entry.lockedUntil > now) return { kind: 'in-flight' };
    }
    const token = randomUUID();
    // Deleted first, so the Map's order stays the order of expiry (for one ttl) after a takeover.
    this.#entries.delete(id);
    this.#entries.set(id, {
      fingerprint: request.fingerprint,
      token,
      lockedUntil: now + request.lockMs,
      expiresAt: now + request.ttlMs,
      ttlMs: request.ttlMs,
      response: undefined,
    });
    return { kind: 'started', token };
  }

  async complete(scope: string, key: string, token: string, response: StoredResponse): Promise<void> {
    const entry = this.#entries.get(`${scope}\u0000${key}`);
    if (entry?.token === token) entry.response = response;
  }

  /**
   * Every key is kept until its expiry at most, not for the life of the process: the oldest
   * entries come first in the Map, so each `begin` drops the expired ones at its front and stops
   * at the first that is not (an entry with a longer ttl ahead of shorter ones only delays them).
   */
  #forgetExpired(now: number): void {
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt > now) return;
      this.#entries.delete(id);
    }
  }

  async release(scope: string, key: string, token: string): Promise<void> {
    const id = `${scope}\u0000${key}`;
    const entry = this.#entries.get(id);
    if (entry?.token === token && entry.response === undefined) this.#entries.delete(id);
  }
}
