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
  type SagaHistoryEntry,
  type SagaInstance,
  type SagaReply,
  type SagaState,
  type StartSagaOptions,
  type StoredError,
} from './saga-store.ts';
export {
  countSagasByState,
  getSaga,
  listSagas,
  pruneSagas,
  retrySaga,
  type ListSagasOptions,
} from './saga-admin.ts';
export { sagaMigrations, sagaChannel } from './schema.ts';
