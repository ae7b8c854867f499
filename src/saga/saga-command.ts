import { InvalidArgumentError } from '../errors/index.ts';
import { createEnvelope, type Envelope, type EnvelopeInit } from '../messaging/envelope.ts';
import type { Clock } from '../time/index.ts';
import type { SagaCommand, SagaStepContext } from './definition.ts';
import { unstorableAt } from './storable-json.ts';

/** Headers the runner puts on every command it sends; a replying service copies the first two. */
export const sagaHeaders = {
  instance: 'keel-saga-instance',
  step: 'keel-saga-step',
  idempotencyKey: 'idempotency-key',
} as const;

/** Where a reply to `command` goes: read from the saga headers of a command message. */
export function sagaReplyAddress(command: Pick<Envelope, 'headers'>): { instanceId: string; step: string } {
  const instanceId = command.headers[sagaHeaders.instance];
  const step = command.headers[sagaHeaders.step];
  if (instanceId === undefined || step === undefined) {
    throw new InvalidArgumentError(
      'command.headers',
      `the headers ${sagaHeaders.instance} and ${sagaHeaders.step} of a saga command`,
    );
  }
  return { instanceId, step };
}

/**
 * Builds a step's command: its message function's envelope with the saga headers. Throws when the
 * function throws or its envelope cannot be stored (no `type` or no payload, or text jsonb
 * refuses): a fault of the step, which fails it (or parks its compensation) rather than the
 * progress transaction on every runner that takes the instance over.
 */
export function buildSagaCommand(
  command: SagaCommand<unknown>,
  context: SagaStepContext,
  clock: Clock,
): Envelope {
  const init = command.message(context) as EnvelopeInit<unknown> | null | undefined;
  const at = `the command of saga step ${context.step} (${context.phase})`;
  if (init === null || typeof init !== 'object' || typeof init.type !== 'string' || init.type === '') {
    throw new InvalidArgumentError(at, 'a message { type, payload } from its message function', init);
  }
  // JSON has no undefined: the outbox row's payload would be SQL NULL (a NOT NULL column).
  if (init.payload === undefined) {
    throw new InvalidArgumentError(`${at}.payload`, 'a JSON value (null included)');
  }
  const message = createEnvelope(
    {
      ...init,
      headers: {
        ...init.headers,
        'correlation-id': context.instanceId,
        [sagaHeaders.instance]: context.instanceId,
        [sagaHeaders.step]: context.step,
        [sagaHeaders.idempotencyKey]: context.idempotencyKey,
      },
    },
    clock,
  );
  const bad = unstorableAt(JSON.parse(JSON.stringify(message)) as unknown);
  if (bad !== undefined) {
    throw new InvalidArgumentError(`${at}${bad}`, 'text PostgreSQL can store (no U+0000, no lone surrogate)');
  }
  return message;
}
