import {
  ErrorCode,
  OpenFeatureEventEmitter,
  ProviderEvents,
  type EvaluationContext,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { systemClock, type Clock, type TimerHandle } from '../time/index.ts';
import { evaluateFlag } from './evaluate-flag.ts';
import type { FlagDefinition } from './flag-definition.ts';
import type { FlagSource, StoredFlag, UnreadableFlag } from './postgres-flag-store.ts';

export interface KeelFlagProviderOptions {
  clock?: Clock;
  /**
   * How often the flags are read again when no change was heard (a NOTIFY is lost across a
   * reconnect); default 30 s.
   */
  pollIntervalMs?: number;
  /**
   * Told of every read of the flags, the polls' included: `error` undefined when it succeeded.
   * OpenFeature's STALE and READY events say only when reads turn from succeeding to failing and
   * back; this says when the source last answered, for a health record.
   */
  onRead?: (error: unknown) => void;
}

type Kind = 'boolean' | 'string' | 'number' | 'object';

// A flag removed and created again restarts at version 1: the version alone would miss that change.
function sameFlag(
  a: StoredFlag | UnreadableFlag | undefined,
  b: StoredFlag | UnreadableFlag | undefined,
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.version === b.version && content(a) === content(b);
}

function content(flag: StoredFlag | UnreadableFlag): string {
  return 'error' in flag ? `unreadable: ${flag.error.message}` : JSON.stringify(flag.definition);
}

function kindOf(value: unknown): Kind {
  const type = typeof value;
  return type === 'boolean' || type === 'string' || type === 'number' ? type : 'object';
}

/**
 * An OpenFeature provider over keel's flags: `OpenFeature.setProviderAndWait(new
 * KeelFlagProvider(new PostgresFlagStore(db)))`. Flags are held in memory and evaluated there
 * (no round trip per evaluation); a change heard from the source, or found by the poll, replaces
 * them and emits `PROVIDER_CONFIGURATION_CHANGED` with the keys that changed.
 */
export class KeelFlagProvider implements Provider {
  readonly metadata = { name: 'keel' } as const;
  readonly runsOn = 'server' as const;
  readonly events = new OpenFeatureEventEmitter();
  readonly #source: FlagSource;
  readonly #clock: Clock;
  readonly #pollIntervalMs: number;
  readonly #onRead: (error: unknown) => void;
  #flags = new Map<string, StoredFlag | UnreadableFlag>();
  // Until a read succeeds an absent flag says nothing about the store: not FLAG_NOT_FOUND.
  #loaded = false;
  #unsubscribe: (() => Promise<void>) | undefined;
  #poll: TimerHandle | undefined;
  #reading: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #stale = false;
  #closing: Promise<void> | undefined;

  constructor(source: FlagSource, options: KeelFlagProviderOptions = {}) {
    this.#source = source;
    this.#clock = options.clock ?? systemClock;
    this.#pollIntervalMs = options.pollIntervalMs ?? 30_000;
    this.#onRead = options.onRead ?? (() => {});
  }

  /** How often the flags are read when nothing else asks: a reader can tell silence from it. */
  get pollIntervalMs(): number {
    return this.#pollIntervalMs;
  }

  /**
   * Listens for changes and reads every flag. Rejects when the source cannot be reached (the
   * provider is then in OpenFeature's ERROR state and callers get their defaults), but keeps
   * polling: the first read that succeeds emits READY.
   */
  async initialize(): Promise<void> {
    try {
      await this.#listen();
      await this.refresh();
    } finally {
      this.#schedulePoll();
    }
  }

  async #listen(): Promise<void> {
    if (this.#unsubscribe !== undefined || this.#source.subscribe === undefined) return;
    const unsubscribe = await this.#source.subscribe(() => void this.refresh().catch(() => undefined));
    // Closed while subscribing: nobody else will end this subscription.
    if (this.#closing !== undefined) await unsubscribe();
    else this.#unsubscribe = unsubscribe;
  }

  /** Stops listening and polling; every call waits for the same close (OpenFeature calls it too, when the provider is replaced). */
  onClose(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#poll !== undefined) this.#clock.clearTimeout(this.#poll);
      await this.#unsubscribe?.();
    })();
    return this.#closing;
  }

  /**
   * Reads every flag again; resolves once what was stored when it was called is in memory. A
   * failed read keeps the flags held before it, rejects, and marks the provider STALE (the
   * reason is in the event) until a read succeeds.
   */
  refresh(): Promise<void> {
    if (this.#reading === undefined) {
      this.#reading = this.#read().finally(() => {
        this.#reading = undefined;
      });
      return this.#reading;
    }
    // The read under way may have started before what the caller knows was written: one more
    // after it, shared by every caller in the meantime.
    this.#next ??= this.#reading
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.refresh();
      });
    return this.#next;
  }

  /** The definitions in memory now, by key. */
  get flags(): ReadonlyMap<string, FlagDefinition> {
    const readable = [...this.#flags].flatMap(([key, flag]) =>
      'error' in flag ? [] : [[key, flag.definition] as const],
    );
    return new Map(readable);
  }

  async #read(): Promise<void> {
    let listed: (StoredFlag | UnreadableFlag)[];
    try {
      listed = await (this.#source.read?.() ?? this.#source.list());
    } catch (error) {
      this.#stale = true;
      this.#onRead(error);
      this.events.emit(ProviderEvents.Stale, { message: `flags not read: ${String(error)}` });
      throw error;
    }
    this.#onRead(undefined);
    this.#loaded = true;
    if (this.#stale) {
      this.#stale = false;
      this.events.emit(ProviderEvents.Ready);
    }
    const next = new Map(listed.map((flag) => ['error' in flag ? flag.key : flag.definition.key, flag]));
    const changed = [...new Set([...next.keys(), ...this.#flags.keys()])].filter(
      (key) => !sameFlag(next.get(key), this.#flags.get(key)),
    );
    this.#flags = next;
    if (changed.length > 0) this.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: changed });
  }

  #schedulePoll(): void {
    if (this.#closing !== undefined) return;
    this.#poll = this.#clock.setTimeout(() => {
      // A listener that failed to start (the store was down) is tried again with each poll.
      void this.#listen()
        .catch(() => undefined)
        .then(() => this.refresh())
        .catch(() => undefined)
        .finally(() => this.#schedulePoll());
    }, this.#pollIntervalMs);
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext) {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'boolean'));
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext) {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'string'));
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext) {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'number'));
  }

  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext) {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'object'));
  }

  #resolve<T>(
    flagKey: string,
    defaultValue: T,
    context: EvaluationContext,
    kind: Kind,
  ): ResolutionDetails<T> {
    const flag = this.#flags.get(flagKey);
    if (flag === undefined && !this.#loaded) {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: ErrorCode.PROVIDER_NOT_READY,
        errorMessage: `flags not read yet, so not ${flagKey} either`,
      };
    }
    if (flag === undefined) {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: ErrorCode.FLAG_NOT_FOUND,
        errorMessage: `no flag ${flagKey}`,
      };
    }
    const flagMetadata = { version: flag.version };
    if ('error' in flag) {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: ErrorCode.PARSE_ERROR,
        errorMessage: flag.error.message,
        flagMetadata,
      };
    }
    const evaluation = evaluateFlag(flag.definition, context);
    if (evaluation.variant === undefined)
      return { value: defaultValue, reason: evaluation.reason, flagMetadata };
    if (kindOf(evaluation.value) !== kind) {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: ErrorCode.TYPE_MISMATCH,
        errorMessage: `flag ${flagKey} serves a ${kindOf(evaluation.value)} (variant ${evaluation.variant}), not a ${kind}`,
        flagMetadata,
      };
    }
    return {
      value: evaluation.value as T,
      variant: evaluation.variant,
      reason: evaluation.reason,
      flagMetadata,
    };
  }
}
