// An instance's history, typed by the kind of each entry, so a reader narrows on `event` and
// reads `detail` without a cast. The table below is what the writers put in each column: the
// runner (through `writeProgress`, whose input type is derived from it), `startSaga`,
// `claimSagas`, `deliverSagaReply` and `retrySaga`. A new kind of entry starts here.
import type { SagaState, StoredError } from './saga-store.ts';

/** What each kind of history entry holds in `step`, `attempt`, `owner` and `detail`. */
export interface SagaHistoryKinds {
  /** `startSaga` created the instance (`owner` null: no runner held it yet). */
  created: { step: null; attempt: null; owner: null; detail: { saga: string; version: number } };
  /** A runner (`owner`) took the instance over from `detail.from`, whose lease had expired. */
  'lease-taken-over': { step: null; attempt: null; owner: string; detail: { from: string; epoch: number } };
  /** The step's action succeeded on attempt `attempt`; its result is in `instance.results[step]`. */
  'step-completed': { step: string; attempt: number; owner: string; detail: null };
  /** The step's action failed for good after `attempt` attempts (or sends): compensation follows. */
  'step-failed': { step: string; attempt: number; owner: string; detail: StoredError };
  /** A request step's command went into the outbox (send number `attempt`). `deadlineAt` is ISO 8601. */
  'command-sent': {
    step: string;
    attempt: number;
    owner: string;
    detail: { messageId: string; deadlineAt: string };
  };
  /** `deliverSagaReply` accepted a reply for the step (`owner` null: the consumer wrote it, not a runner). */
  'reply-received': { step: string; attempt: null; owner: null; detail: { ok: boolean } };
  'compensation-completed': { step: string; attempt: number; owner: string; detail: null };
  /** The compensation's retry gave up after `attempt` attempts: the instance is parked. */
  'compensation-failed': { step: string; attempt: number; owner: string; detail: StoredError };
  /** The last step completed. */
  completed: { step: null; attempt: null; owner: string; detail: null };
  /** The last compensation completed. */
  compensated: { step: null; attempt: null; owner: string; detail: null };
  /** The instance changed state (written with the entry that caused it). */
  state: { step: null; attempt: null; owner: string; detail: { from: SagaState; to: SagaState } };
  /** An operator gave a parked instance back to the runners; `owner` is the `by` they gave, if any. */
  'retried-by-operator': { step: null; attempt: null; owner: string | null; detail: null };
}

/** The kinds of history entry. */
export type SagaHistoryEvent = keyof SagaHistoryKinds;

/**
 * One row of `keel_saga_history`, a union discriminated by `event`: after
 * `if (entry.event === 'step-failed')`, `entry.detail` is a `StoredError` and `entry.step` a string.
 */
export type SagaHistoryEntry = {
  [K in SagaHistoryEvent]: {
    /** Increases with every entry written (across instances): the order of an instance's history. */
    seq: number;
    at: Date;
    event: K;
  } & SagaHistoryKinds[K];
}[SagaHistoryEvent];

/** The kinds the runner writes with its progress. */
type RunnerEvent =
  | 'step-completed'
  | 'step-failed'
  | 'command-sent'
  | 'compensation-completed'
  | 'compensation-failed'
  | 'completed'
  | 'compensated'
  | 'state';

/** A kind's columns as given to `writeProgress`: `owner` is the fence's, and the null ones may be left out. */
type Given<T> = { [F in keyof T as T[F] extends null ? never : F]: T[F] } & {
  [F in keyof T as T[F] extends null ? F : never]?: null;
};

/** A row of history the runner writes with a progress change: typed by the same table as the reads. */
export type HistoryInit = {
  [K in RunnerEvent]: { event: K } & Given<Omit<SagaHistoryKinds[K], 'owner'>>;
}[RunnerEvent];

/** A row of `keel_saga_history` as the driver returns it. */
export interface HistoryRow {
  seq: string | number;
  at: Date | string;
  event: string;
  step: string | null;
  attempt: number | null;
  owner: string | null;
  detail: unknown;
}

export function historyFromRow(row: HistoryRow): SagaHistoryEntry {
  // The table holds only what keel's writers put there, kind by kind as `SagaHistoryKinds` says.
  return {
    seq: Number(row.seq),
    at: row.at instanceof Date ? row.at : new Date(row.at),
    event: row.event,
    step: row.step,
    attempt: row.attempt,
    owner: row.owner,
    detail: row.detail,
  } as SagaHistoryEntry;
}
