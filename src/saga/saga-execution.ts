// One instance's steps, run by the runner that holds its lease. Every outcome is written
// (fenced by the lease) before the next effect starts, so a crash between two writes repeats at
// most the one step in between, with the same idempotency key.
import type { Db, Queryable } from '../db/db.ts';
import { InvalidArgumentError, isKeelError, KeelError } from '../errors/index.ts';
import type { Envelope } from '../messaging/envelope.ts';
import { addToOutbox } from '../outbox/index.ts';
import type { LifecycleEvents } from '../service/service.ts';
import type { TypedEvents } from '../service/typed-events.ts';
import type { Clock } from '../time/index.ts';
import {
  sagaIdempotencyKey,
  type SagaCommand,
  type SagaDefinition,
  type SagaPhase,
  type SagaStep,
  type SagaStepContext,
} from './definition.ts';
import type { SagaRunnerEvents, SagaStepEvent } from './events.ts';
import { LeaseLostError } from './lease-lost-error.ts';
import { buildSagaCommand } from './saga-command.ts';
import type { HistoryInit } from './saga-history.ts';
import {
  lockFenced,
  resultsInStepOrder,
  storedError,
  writeProgress,
  type Fence,
  type ProgressChange,
  type SagaInstance,
  type SagaState,
  type StoredError,
} from './saga-store.ts';
import { StepPolicies } from './step-policies.ts';
import { inScopes, type StepScope } from './step-scope.ts';
import { storableText, unstorableAt } from './storable-json.ts';

/** A plain copy of the instance's mutable part, advanced as writes commit. */
interface Cursor {
  state: SagaState;
  step: number;
  results: Record<string, unknown>;
  attempts: number;
}

export class SagaExecution {
  readonly #policies: StepPolicies;

  constructor(
    readonly db: Db,
    readonly clock: Clock,
    readonly owner: string,
    readonly events: TypedEvents<SagaRunnerEvents & LifecycleEvents>,
    readonly stopping: () => boolean,
    readonly scopes: () => readonly StepScope[] = () => [],
  ) {
    this.#policies = new StepPolicies(clock);
  }

  /** Clears the step policies' timers. */
  dispose(): void {
    this.#policies.dispose();
  }

  leaseLost(instance: SagaInstance): LeaseLostError {
    return new LeaseLostError(instance.id);
  }

  /** Runs the instance until it finishes, waits, is parked, is handed back (stop) or its lease is lost. */
  async run(
    definition: SagaDefinition,
    instance: SagaInstance,
    fence: Fence,
    signal: AbortSignal,
  ): Promise<void> {
    const cursor: Cursor = {
      state: instance.state,
      step: instance.step,
      // As stored (jsonb sorts keys): a step reads `context.results` in the definition's order.
      results: resultsInStepOrder(
        instance.results,
        definition.steps.map((step) => step.name),
      ),
      attempts: instance.attempts,
    };
    try {
      for (;;) {
        if (signal.aborted || this.stopping()) {
          if (!(signal.reason instanceof LeaseLostError)) await this.#write(fence, { release: true }, []);
          return;
        }
        const more =
          cursor.state === 'RUNNING'
            ? await this.#forward(definition, instance, fence, cursor, signal)
            : cursor.state === 'COMPENSATING'
              ? await this.#backward(definition, instance, fence, cursor, signal)
              : false;
        if (!more) return;
      }
    } catch (error) {
      if (error instanceof LeaseLostError || signal.reason instanceof LeaseLostError) {
        if (this.events.has('lease-lost')) {
          this.events.emit('lease-lost', {
            instanceId: instance.id,
            saga: instance.saga,
            version: instance.version,
          });
        }
        return;
      }
      throw error;
    }
  }

  /** One step forward; false when the instance stopped here (finished or waiting). */
  async #forward(
    definition: SagaDefinition,
    instance: SagaInstance,
    fence: Fence,
    cursor: Cursor,
    signal: AbortSignal,
  ): Promise<boolean> {
    const steps = definition.steps;
    if (cursor.step >= steps.length) {
      (await this.#finish(instance, fence, cursor, 'COMPLETED', {}, [{ event: 'completed' }]))();
      return false;
    }
    const step = steps[cursor.step]!;
    if (step.request !== undefined) return this.#request(instance, fence, cursor, step, signal);
    const started = this.clock.now();
    let attempts = 0;
    const base = this.#event(instance, step, cursor.step, 'action', cursor.attempts + 1);
    if (this.events.has('step-started')) this.events.emit('step-started', base);
    let result: unknown;
    /** The action succeeded: its effect applied, whether or not its result can be recorded. */
    let applied = false;
    try {
      result = await inScopes(this.scopes(), base, () =>
        this.#policies.of(step).action.execute((context) => {
          attempts = context.attempt;
          return step.action!(this.#context(instance, cursor, step, 'action', context));
        }, signal),
      );
      applied = true;
      // A result that is not JSON cannot be recorded: the step fails rather than the runner.
      result = result === undefined ? null : (JSON.parse(JSON.stringify(result)) as unknown);
      const bad = unstorableAt(result);
      if (bad !== undefined) {
        throw new InvalidArgumentError(
          `the result of step ${step.name}${bad}`,
          'text PostgreSQL can store (no U+0000, no lone surrogate)',
        );
      }
    } catch (error) {
      if (signal.aborted && !applied) {
        // Lost: stop at once. Draining: the loop gives the lease back and the step runs again elsewhere.
        if (signal.reason instanceof LeaseLostError) throw signal.reason;
        return true;
      }
      // An action that took effect with a result that cannot be kept is undone with the others.
      const compensateThisStep =
        step.compensateOnFailure === true || (applied && step.compensation !== undefined);
      await this.#fail(
        instance,
        fence,
        cursor,
        step,
        cursor.attempts + attempts,
        error,
        started,
        compensateThisStep,
      );
      return true;
    }
    const change: ProgressChange = {
      step: cursor.step + 1,
      mergeResults: { [step.name]: result },
      attempts: 0,
    };
    const history: HistoryInit[] = [
      { event: 'step-completed', step: step.name, attempt: cursor.attempts + attempts },
    ];
    const emit = (): void => {
      if (this.events.has('step-completed')) {
        this.events.emit('step-completed', {
          ...base,
          attempt: base.attempt - 1 + attempts,
          durationMs: this.clock.now() - started,
        });
      }
    };
    cursor.results[step.name] = result;
    if (cursor.step + 1 === steps.length) {
      // The last step: its outcome and the completion in one write.
      cursor.step += 1;
      const announce = await this.#finish(instance, fence, cursor, 'COMPLETED', change, [
        ...history,
        { event: 'completed' },
      ]);
      emit();
      announce();
      return false;
    }
    await this.#write(fence, change, history);
    cursor.step += 1;
    cursor.attempts = 0;
    emit();
    return true;
  }

  /** A request step: send its command, or take its reply, or fail it on its deadline. */
  async #request(
    instance: SagaInstance,
    fence: Fence,
    cursor: Cursor,
    step: SagaStep<unknown>,
    signal: AbortSignal,
  ): Promise<boolean> {
    const request = step.request!;
    const maxSends = request.maxSends ?? 1;
    const started = this.clock.now();
    // Under the row lock: a reply committed before this reads it; one after it waits for this.
    const outcome = await this.db.transaction(async (tx) => {
      const fresh = await lockFenced(tx, fence);
      if (fresh === undefined) throw new LeaseLostError(instance.id);
      const now = this.clock.now();
      const waiting = fresh.waitingFor === step.name;
      if (waiting && fresh.reply !== null)
        return { kind: 'reply' as const, reply: fresh.reply, sends: fresh.sends };
      const due = !waiting || (fresh.deadlineAt !== null && fresh.deadlineAt.getTime() <= now);
      if (!due) {
        await this.#write(fence, { release: true, wakeAt: fresh.deadlineAt! }, [], tx);
        return { kind: 'wait' as const, sends: fresh.sends };
      }
      const sends = waiting ? fresh.sends : 0;
      if (sends >= maxSends) return { kind: 'deadline' as const, sends };
      const context = this.#context(instance, cursor, step, 'action', { attempt: sends + 1, signal });
      const sending = await this.#send(tx, request, context);
      if ('error' in sending) return { kind: 'unsendable' as const, sends, error: sending.error };
      const message = sending.message;
      const deadline = new Date(now + request.replyDeadlineMs);
      await this.#write(
        fence,
        {
          sends: sends + 1,
          waitingFor: step.name,
          deadlineAt: deadline,
          reply: null,
          wakeAt: deadline,
          release: true,
        },
        [
          {
            event: 'command-sent',
            step: step.name,
            attempt: sends + 1,
            detail: { messageId: message.id, deadlineAt: deadline.toISOString() },
          },
        ],
        tx,
      );
      return { kind: 'sent' as const, sends: sends + 1 };
    });
    const base = this.#event(instance, step, cursor.step, 'action', outcome.sends);
    switch (outcome.kind) {
      case 'wait':
        return false;
      case 'sent':
        if (this.events.has('step-started')) this.events.emit('step-started', base);
        return false;
      case 'unsendable':
        // A send before this one may have taken effect: then compensate this step too.
        await this.#fail(
          instance,
          fence,
          cursor,
          step,
          outcome.sends,
          outcome.error,
          started,
          outcome.sends > 0,
        );
        return true;
      case 'deadline': {
        const error = new KeelError(
          'KEEL_TIMEOUT',
          `saga step ${step.name}: no reply within ${request.replyDeadlineMs} ms after ${outcome.sends} send(s)`,
        );
        // The command may have taken effect without a reply arriving: compensate this step too.
        await this.#fail(instance, fence, cursor, step, outcome.sends, error, started, true);
        return true;
      }
      case 'reply': {
        const reply = outcome.reply;
        if (!reply.ok) {
          await this.#fail(
            instance,
            fence,
            cursor,
            step,
            outcome.sends,
            new Error(reply.error),
            started,
            // The service may have applied part of it before it refused: the step says.
            step.compensateOnFailure === true,
          );
          return true;
        }
        const result = reply.result === undefined ? null : reply.result;
        await this.#write(
          fence,
          {
            step: cursor.step + 1,
            mergeResults: { [step.name]: result },
            attempts: 0,
            sends: 0,
            waitingFor: null,
            deadlineAt: null,
            reply: null,
          },
          [{ event: 'step-completed', step: step.name, attempt: outcome.sends }],
        );
        cursor.results[step.name] = result;
        cursor.step += 1;
        cursor.attempts = 0;
        if (this.events.has('step-completed')) {
          this.events.emit('step-completed', { ...base, durationMs: this.clock.now() - started });
        }
        return true;
      }
    }
  }

  /** The step failed for good: compensate the completed steps (and this one, when asked). */
  async #fail(
    instance: SagaInstance,
    fence: Fence,
    cursor: Cursor,
    step: SagaStep<unknown>,
    attempts: number,
    error: unknown,
    started: number,
    compensateThisStep: boolean,
  ): Promise<void> {
    const stored = storable(storedError(error, step.name));
    const next = compensateThisStep ? cursor.step : cursor.step - 1;
    await this.#write(
      fence,
      {
        state: 'COMPENSATING',
        step: next,
        attempts: 0,
        failure: stored,
        waitingFor: null,
        deadlineAt: null,
        reply: null,
        sends: 0,
      },
      [
        { event: 'step-failed', step: step.name, attempt: attempts, detail: stored },
        { event: 'state', detail: { from: 'RUNNING', to: 'COMPENSATING' } },
      ],
    );
    const index = cursor.step;
    cursor.state = 'COMPENSATING';
    cursor.step = next;
    cursor.attempts = 0;
    if (this.events.has('step-failed')) {
      this.events.emit('step-failed', {
        ...this.#event(instance, step, index, 'action', attempts),
        durationMs: this.clock.now() - started,
        error: stored,
      });
    }
    this.#stateChanged(instance, 'RUNNING', 'COMPENSATING');
  }

  /** One compensation backward; false when the instance stopped here (compensated or parked). */
  async #backward(
    definition: SagaDefinition,
    instance: SagaInstance,
    fence: Fence,
    cursor: Cursor,
    signal: AbortSignal,
  ): Promise<boolean> {
    // Steps without a compensation are passed over without a write: repeating that is harmless.
    while (cursor.step >= 0 && definition.steps[cursor.step]?.compensation === undefined) cursor.step -= 1;
    if (cursor.step < 0) {
      (
        await this.#finish(instance, fence, cursor, 'COMPENSATED', { step: -1 }, [{ event: 'compensated' }])
      )();
      return false;
    }
    const step = definition.steps[cursor.step]!;
    const compensation = step.compensation!;
    const started = this.clock.now();
    const base = this.#event(instance, step, cursor.step, 'compensation', cursor.attempts + 1);
    if (this.events.has('compensation-started')) this.events.emit('compensation-started', base);
    // The last compensation's outcome and COMPENSATED share one write.
    const last = !definition.steps.slice(0, cursor.step).some((s) => s.compensation !== undefined);
    /** Records the compensation (in `tx` when given); returns the events to emit after the commit. */
    const record = async (attempts: number, tx?: Queryable): Promise<() => void> => {
      const history: HistoryInit[] = [
        { event: 'compensation-completed', step: step.name, attempt: attempts },
      ];
      const completed = (): void => {
        if (this.events.has('compensation-completed')) {
          this.events.emit('compensation-completed', {
            ...base,
            attempt: attempts,
            durationMs: this.clock.now() - started,
          });
        }
      };
      if (last) {
        const change: ProgressChange = { step: -1, attempts: 0 };
        const announce = await this.#finish(
          instance,
          fence,
          cursor,
          'COMPENSATED',
          change,
          [...history, { event: 'compensated' }],
          tx,
        );
        cursor.step = -1;
        return () => {
          completed();
          announce();
        };
      }
      await this.#write(fence, { step: cursor.step - 1, attempts: 0 }, history, tx);
      cursor.step -= 1;
      cursor.attempts = 0;
      return completed;
    };
    let announce: () => void;
    if (typeof compensation !== 'function') {
      const context = this.#context(instance, cursor, step, 'compensation', { attempt: 1, signal });
      const sent = await this.db.transaction(async (tx) => {
        const sending = await this.#send(tx, compensation.command, context);
        return 'error' in sending ? sending : { announce: await record(cursor.attempts + 1, tx) };
      });
      if ('error' in sent) {
        await this.#park(instance, fence, cursor, base, started, sent.error, cursor.attempts + 1);
        return false;
      }
      announce = sent.announce;
    } else {
      let attempts = 0;
      try {
        await inScopes(this.scopes(), base, () =>
          this.#policies.of(step).compensation.execute((context) => {
            attempts = context.attempt;
            return compensation(this.#context(instance, cursor, step, 'compensation', context));
          }, signal),
        );
      } catch (error) {
        if (signal.aborted) {
          // Lost: stop at once. Draining: the loop gives the lease back and the step runs again elsewhere.
          if (signal.reason instanceof LeaseLostError) throw signal.reason;
          return true;
        }
        await this.#park(instance, fence, cursor, base, started, error, cursor.attempts + attempts);
        return false;
      }
      announce = await record(cursor.attempts + attempts);
    }
    announce();
    return !last;
  }

  /**
   * Builds a step's command and adds it to the outbox in `tx`. What the step got wrong (its message
   * function threw, the outbox refused the envelope before sending anything) is returned, not
   * thrown: it fails the step or parks the compensation, where a throw would abort the progress
   * transaction on every runner that takes the instance over, for good.
   */
  async #send(
    tx: Queryable,
    command: SagaCommand<unknown>,
    context: SagaStepContext,
  ): Promise<{ message: Envelope } | { error: unknown }> {
    let message: Envelope;
    try {
      message = buildSagaCommand(command, context, this.clock);
    } catch (error) {
      return { error };
    }
    try {
      await addToOutbox(tx, command.destination, message);
    } catch (error) {
      if (isKeelError(error, 'KEEL_INVALID_ARGUMENT')) return { error };
      throw error;
    }
    return { message };
  }

  /** The compensation failed for good: park the instance in NEEDS_ATTENTION with the error. */
  async #park(
    instance: SagaInstance,
    fence: Fence,
    cursor: Cursor,
    base: SagaStepEvent,
    started: number,
    error: unknown,
    total: number,
  ): Promise<void> {
    const stored = storable(storedError(error, base.step));
    const parked = await this.#finish(
      instance,
      fence,
      cursor,
      'NEEDS_ATTENTION',
      { attempts: total, lastError: stored },
      [{ event: 'compensation-failed', step: base.step, attempt: total, detail: stored }],
    );
    if (this.events.has('compensation-failed')) {
      this.events.emit('compensation-failed', {
        ...base,
        attempt: total,
        durationMs: this.clock.now() - started,
        error: stored,
      });
    }
    parked();
  }

  /**
   * Ends the instance in `to` (or parks it) and gives the lease back, in `tx` when given. Returns
   * the state event to emit once the write committed.
   */
  async #finish(
    instance: SagaInstance,
    fence: Fence,
    cursor: Cursor,
    to: SagaState,
    change: ProgressChange,
    history: HistoryInit[],
    tx: Queryable = this.db,
  ): Promise<() => void> {
    const now = this.clock.now();
    const from = cursor.state;
    await this.#write(
      fence,
      { ...change, state: to, release: true, finishedAt: to === 'NEEDS_ATTENTION' ? null : new Date(now) },
      [...history, { event: 'state', detail: { from, to } }],
      tx,
    );
    cursor.state = to;
    return () => this.#stateChanged(instance, from, to);
  }

  async #write(
    fence: Fence,
    change: ProgressChange,
    history: readonly HistoryInit[],
    tx: Queryable = this.db,
  ): Promise<void> {
    if (!(await writeProgress(tx, fence, this.clock.now(), change, history))) {
      throw new LeaseLostError(fence.id);
    }
  }

  #context(
    instance: SagaInstance,
    cursor: Cursor,
    step: SagaStep<unknown>,
    phase: SagaPhase,
    run: { attempt: number; signal: AbortSignal },
  ): SagaStepContext {
    return {
      instanceId: instance.id,
      saga: instance.saga,
      version: instance.version,
      step: step.name,
      phase,
      input: instance.input,
      results: cursor.results,
      idempotencyKey: sagaIdempotencyKey(instance.id, step.name, phase),
      attempt: run.attempt,
      signal: run.signal,
    };
  }

  #event(
    instance: SagaInstance,
    step: SagaStep<unknown>,
    index: number,
    phase: SagaPhase,
    attempt: number,
  ): SagaStepEvent {
    return {
      instanceId: instance.id,
      saga: instance.saga,
      version: instance.version,
      step: step.name,
      index,
      phase,
      attempt,
    };
  }

  #stateChanged(instance: SagaInstance, from: SagaState, to: SagaState): void {
    if (this.events.has('saga-state')) {
      this.events.emit('saga-state', {
        instanceId: instance.id,
        saga: instance.saga,
        version: instance.version,
        from,
        to,
      });
    }
  }
}

/** An error as jsonb can store it: a driver's message may hold U+0000, a cut one half an emoji. */
function storable(error: StoredError): StoredError {
  const out: StoredError = { message: storableText(error.message) };
  if (error.code !== undefined) out.code = storableText(error.code);
  if (error.name !== undefined) out.name = storableText(error.name);
  if (error.step !== undefined) out.step = error.step;
  return out;
}
