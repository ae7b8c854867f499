import type { SagaPhase } from './definition.ts';
import type { SagaState, StoredError } from './saga-store.ts';

/** Which instance, saga and version an event is about. */
export interface SagaEventBase {
  instanceId: string;
  saga: string;
  version: number;
}

export interface SagaStepEvent extends SagaEventBase {
  step: string;
  /** The step's position in the definition, 0 for the first. */
  index: number;
  phase: SagaPhase;
  /** Attempts of this step so far, this one included (sends, for a request step). */
  attempt: number;
}

export interface SagaStepDoneEvent extends SagaStepEvent {
  /** Time from the step's start in this runner to its recorded outcome, by the runner's clock. */
  durationMs: number;
}

export interface SagaStepFailedEvent extends SagaStepDoneEvent {
  error: StoredError;
}

/**
 * What a `SagaRunner` emits, synchronously, as it works: for tests to await and for
 * `keel/observability` to turn into spans and metrics. Every "completed", "failed" and "state"
 * event is emitted after its progress write committed.
 */
export interface SagaRunnerEvents {
  /** An action is about to run (or a request's command was sent, committed with the progress). */
  'step-started': SagaStepEvent;
  'step-completed': SagaStepDoneEvent;
  /** The action failed for good (its retry gave up, or a request's deadline passed): compensation follows. */
  'step-failed': SagaStepFailedEvent;
  'compensation-started': SagaStepEvent;
  'compensation-completed': SagaStepDoneEvent;
  /** The compensation's retry gave up: the instance is parked in NEEDS_ATTENTION. */
  'compensation-failed': SagaStepFailedEvent;
  /** An instance changed state. */
  'saga-state': SagaEventBase & { from: SagaState; to: SagaState };
  /** This runner leased an instance; `takenFrom` is the previous owner whose lease expired. */
  claimed: SagaEventBase & { takenFrom: string | null };
  /** A write found the lease held by someone else: this runner stopped working on the instance. */
  'lease-lost': SagaEventBase;
}
