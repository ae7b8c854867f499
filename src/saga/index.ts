// keel/saga: durable sagas with compensation, run from PostgreSQL (PGlite embedded).
export {
  defineSaga,
  sagaIdempotencyKey,
  type SagaCommand,
  type SagaDefinition,
  type SagaDefinitionInit,
  type SagaFunction,
  type SagaPhase,
  type SagaRequest,
  type SagaStep,
  type SagaStepContext,
} from './definition.ts';
export { SagaRunner, type SagaRunnerOptions } from './saga-runner.ts';
/** What `SagaRunner.health()` returns: the `ServiceHealth` every keel service reports. */
export type { ServiceHealth as SagaRunnerHealth } from '../service/service-health.ts';
export { waitForSaga, type WaitForSagaOptions } from './wait-for-saga.ts';
// A step throws it to fail for good at once, without retries; the same class keel/messaging's
// consumers dead-letter on, so a saga's step and a message handler share one way to say "never".
export { PermanentError } from '../messaging/handler.ts';
export type { StepScope } from './step-scope.ts';
export { LeaseLostError } from './lease-lost-error.ts';
export { sagaHeaders, sagaReplyAddress } from './saga-command.ts';
export type {
  SagaEventBase,
  SagaRunnerEvents,
  SagaStepDoneEvent,
  SagaStepEvent,
  SagaStepFailedEvent,
} from './events.ts';
export {
  deliverSagaReply,
  sagaStates,
  startSaga,
  type SagaInstance,
  type SagaReply,
  type SagaState,
  type StartSagaOptions,
  type StoredError,
} from './saga-store.ts';
export type { SagaHistoryEntry, SagaHistoryEvent, SagaHistoryKinds } from './saga-history.ts';
export {
  countSagasByState,
  getSaga,
  listSagas,
  pruneSagas,
  retrySaga,
  type ListSagasOptions,
} from './saga-admin.ts';
export { sagaMigrations, sagaChannel, sagaEndedChannel } from './schema.ts';
