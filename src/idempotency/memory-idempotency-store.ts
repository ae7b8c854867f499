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

  async begin(request: BeginRequest): Promise<BeginOutcome> {
    const now = this.#clock.now();
    const id = `${request.scope}\u0000${request.key}`;
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.expiresAt > now) {
      if (entry.fingerprint !== request.fingerprint) return { kind: 'mismatch' };
      if (entry.response !== undefined) return { kind: 'replay', response: entry.response };
      if (entry.lockedUntil > now) return { kind: 'in-flight' };
    }
    const token = randomUUID();
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

  async release(scope: string, key: string, token: string): Promise<void> {
    const id = `${scope}\u0000${key}`;
    const entry = this.#entries.get(id);
    if (entry?.token === token && entry.response === undefined) this.#entries.delete(id);
  }
}
