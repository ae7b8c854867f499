import { InvalidArgumentError } from '../errors/index.ts';
import type { EnvelopeInit } from '../messaging/envelope.ts';
import { Policy, retry, type RetryOptions } from '../resilience/index.ts';

/** Which side of a step runs: its action going forward, or its compensation going back. */
export type SagaPhase = 'action' | 'compensation';

/** What a step's action or compensation receives. */
export interface SagaStepContext<I = unknown> {
  readonly instanceId: string;
  readonly saga: string;
  readonly version: number;
  readonly step: string;
  readonly phase: SagaPhase;
  /** The input the instance was started with. */
  readonly input: I;
  /** The results of the steps completed so far, by step name (JSON, as stored). */
  readonly results: Readonly<Record<string, unknown>>;
  /**
   * `${instanceId}:${step}:action` or `${instanceId}:${step}:compensation`: the same on every
   * attempt and after a crash, so pass it to the external service (an `Idempotency-Key` header,
   * a provider's idempotency key) and a retried step never doubles its effect.
   */
  readonly idempotencyKey: string;
  /** 1 for the first attempt of this run of the step; counted by the step's retry policy. */
  readonly attempt: number;
  /** Aborts at the step's timeout, when the runner drains, or when it lost the instance's lease. */
  readonly signal: AbortSignal;
}

/** A command message a step sends through the outbox, in the transaction that records the send. */
export interface SagaCommand<I = unknown> {
  /** The queue or topic the outbox relay publishes it to. */
  destination: string;
  /** The message. The runner adds the saga headers (instance, step, idempotency key, correlation id). */
  message: (context: SagaStepContext<I>) => EnvelopeInit<unknown>;
}

/** A command that expects a reply event: see `deliverSagaReply`. */
export interface SagaRequest<I = unknown> extends SagaCommand<I> {
  /** How long to wait for the reply after each send, in ms. Stored, so it survives restarts. */
  replyDeadlineMs: number;
  /** Sends in total before the step fails for good on a missed deadline. Default 1. */
  maxSends?: number;
}

export type SagaFunction<I, R> = (context: SagaStepContext<I>) => Promise<R>;

/**
 * One step. Exactly one of `action` (a function: an HTTP call, a write) and `request` (a command
 * message and a reply event). `compensation` undoes it when a later step fails for good; it is
 * a function or a command sent without waiting for a reply.
 */
export interface SagaStep<I = unknown> {
  /** Unique within the saga; part of the idempotency keys, so never rename a step of a running version. */
  name: string;
  action?: SagaFunction<I, unknown>;
  request?: SagaRequest<I>;
  compensation?: SagaFunction<I, unknown> | { command: SagaCommand<I> };
  /**
   * Also run this step's own compensation when its action fails for good (a request step: an error
   * reply), before the earlier steps' (default false: only completed steps are undone). For an
   * action whose last attempt may have taken effect without its answer arriving (a timeout after
   * the remote side committed): the compensation then runs whether or not the effect applied, so
   * it must undo by the action's idempotency key and be a no-op when there is nothing to undo;
   * `results` has no entry for the step. A request step whose reply deadline passes is always
   * compensated so.
   */
  compensateOnFailure?: boolean;
  /** Retry of the action, without `clock` (the runner's). Default: 3 attempts, 100 ms doubling, full jitter. */
  retry?: Omit<RetryOptions, 'clock'>;
  /** Bound on each attempt of the action, in ms. Default 30 000. */
  timeoutMs?: number;
  /** Retry of the compensation; when it gives up the instance is parked. Default: 10 attempts, 100 ms doubling to 30 s. */
  compensationRetry?: Omit<RetryOptions, 'clock'>;
  /** Bound on each attempt of the compensation, in ms. Default 30 000. */
  compensationTimeoutMs?: number;
  /** A policy run inside retry and timeout, per attempt: a circuit breaker shared by every call of a service. */
  policy?: Policy<never>;
}

export interface SagaDefinitionInit<I> {
  /** `[A-Za-z0-9_.-]`, 1-100 characters. */
  name: string;
  /** An integer >= 1. A running instance always finishes on the version it started with. */
  version: number;
  steps: readonly SagaStep<I>[];
}

/** A validated saga definition: build it with `defineSaga`. */
export interface SagaDefinition<I = unknown> {
  readonly name: string;
  readonly version: number;
  readonly steps: readonly SagaStep<I>[];
  /** `name@version`. */
  readonly key: string;
}

const namePattern = /^[A-Za-z0-9_.-]{1,100}$/;
const stepPattern = /^[A-Za-z0-9_.-]{1,100}$/;

/** Checks a definition at the boundary and freezes it. Bad input throws `KEEL_INVALID_ARGUMENT` naming the field. */
export function defineSaga<I = unknown>(init: SagaDefinitionInit<I>): SagaDefinition<I> {
  if (init === null || typeof init !== 'object') throw new InvalidArgumentError('saga', 'an object', init);
  if (typeof init.name !== 'string' || !namePattern.test(init.name)) {
    throw new InvalidArgumentError('saga.name', 'a name of [A-Za-z0-9_.-], 1-100 characters', init.name);
  }
  if (!Number.isInteger(init.version) || init.version < 1) {
    throw new InvalidArgumentError('saga.version', 'an integer >= 1', init.version);
  }
  if (!Array.isArray(init.steps) || init.steps.length === 0) {
    throw new InvalidArgumentError('saga.steps', 'a non-empty array of steps', init.steps);
  }
  const seen = new Set<string>();
  const list: readonly SagaStep<I>[] = init.steps;
  const steps = list.map((step, i) => {
    const at = `saga.steps.${i}`;
    if (step === null || typeof step !== 'object') throw new InvalidArgumentError(at, 'a step object', step);
    if (typeof step.name !== 'string' || !stepPattern.test(step.name)) {
      throw new InvalidArgumentError(`${at}.name`, 'a name of [A-Za-z0-9_.-], 1-100 characters', step.name);
    }
    if (seen.has(step.name)) {
      throw new InvalidArgumentError(`${at}.name`, 'a name no other step of the saga uses', step.name);
    }
    seen.add(step.name);
    if ((step.action === undefined) === (step.request === undefined)) {
      throw new InvalidArgumentError(`${at}`, 'exactly one of action (a function) and request (a command)');
    }
    if (step.action !== undefined && typeof step.action !== 'function') {
      throw new InvalidArgumentError(`${at}.action`, 'an async function (context) => result', step.action);
    }
    if (step.request !== undefined) checkRequest(`${at}.request`, step.request);
    const compensation = step.compensation;
    if (compensation !== undefined && typeof compensation !== 'function') {
      if (compensation === null || typeof compensation !== 'object') {
        throw new InvalidArgumentError(`${at}.compensation`, 'a function or { command }', compensation);
      }
      checkCommand(`${at}.compensation.command`, compensation.command);
    }
    if (step.compensateOnFailure !== undefined) {
      if (typeof step.compensateOnFailure !== 'boolean') {
        throw new InvalidArgumentError(`${at}.compensateOnFailure`, 'a boolean', step.compensateOnFailure);
      }
      if (step.compensateOnFailure && compensation === undefined) {
        throw new InvalidArgumentError(
          `${at}.compensateOnFailure`,
          'false for a step without a compensation',
          true,
        );
      }
    }
    for (const field of ['timeoutMs', 'compensationTimeoutMs'] as const) {
      const value = step[field];
      if (value !== undefined && (!Number.isFinite(value) || value <= 0)) {
        throw new InvalidArgumentError(`${at}.${field}`, 'a number of ms > 0', value);
      }
    }
    for (const field of ['retry', 'compensationRetry'] as const) {
      const value = step[field];
      if (value === undefined) continue;
      if (value === null || typeof value !== 'object') {
        throw new InvalidArgumentError(`${at}.${field}`, 'retry options (an object)', value);
      }
      checkRetry(`${at}.${field}`, value);
    }
    if (step.policy !== undefined && !(step.policy instanceof Policy)) {
      throw new InvalidArgumentError(`${at}.policy`, 'a keel/resilience Policy', step.policy);
    }
    return Object.freeze({ ...step });
  });
  return Object.freeze({
    name: init.name,
    version: init.version,
    steps: Object.freeze(steps),
    key: `${init.name}@${init.version}`,
  });
}

/**
 * Builds the retry once to check its options here: the runner builds it when the step first
 * runs, and an option it refused there would fail (or park) every instance at that step.
 */
function checkRetry(at: string, options: Omit<RetryOptions, 'clock'>): void {
  try {
    retry({ ...options });
  } catch (error) {
    if (!(error instanceof InvalidArgumentError)) throw error;
    // "maxAttempts: expected …, got 0" becomes "saga.steps.1.retry.maxAttempts: expected …, got 0".
    const expected = error.message.slice(`${error.field}: expected `.length);
    throw new InvalidArgumentError(`${at}.${error.field}`, expected);
  }
}

function checkCommand(at: string, command: unknown): void {
  if (command === null || typeof command !== 'object') {
    throw new InvalidArgumentError(at, 'a command { destination, message }', command);
  }
  const { destination, message } = command as Partial<SagaCommand>;
  if (typeof destination !== 'string' || destination === '') {
    throw new InvalidArgumentError(`${at}.destination`, 'a non-empty string', destination);
  }
  if (typeof message !== 'function') {
    throw new InvalidArgumentError(`${at}.message`, 'a function (context) => { type, payload }', message);
  }
}

function checkRequest<I>(at: string, request: SagaRequest<I>): void {
  checkCommand(at, request);
  if (!Number.isFinite(request.replyDeadlineMs) || request.replyDeadlineMs <= 0) {
    throw new InvalidArgumentError(`${at}.replyDeadlineMs`, 'a number of ms > 0', request.replyDeadlineMs);
  }
  const sends = request.maxSends ?? 1;
  if (!Number.isInteger(sends) || sends < 1) {
    throw new InvalidArgumentError(`${at}.maxSends`, 'an integer >= 1', request.maxSends);
  }
}

/** The idempotency key of one side of one step of one instance. */
export function sagaIdempotencyKey(instanceId: string, step: string, phase: SagaPhase): string {
  return `${instanceId}:${step}:${phase}`;
}
