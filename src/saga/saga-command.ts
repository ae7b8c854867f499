import type { Queryable } from '../db/db.ts';
import { InvalidArgumentError } from '../errors/index.ts';
import { createEnvelope, type Envelope } from '../messaging/envelope.ts';
import { addToOutbox } from '../outbox/index.ts';
import type { Clock } from '../time/index.ts';
import type { SagaCommand, SagaStepContext } from './definition.ts';

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

/** Writes a step's command into the outbox in `tx`: the transaction that records its progress. */
export async function sendSagaCommand(
  tx: Queryable,
  command: SagaCommand<unknown>,
  context: SagaStepContext,
  clock: Clock,
): Promise<Envelope> {
  const init = command.message(context);
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
  await addToOutbox(tx, command.destination, message);
  return message;
}
