import { KeelError } from '../errors/index.ts';

/**
 * What a projection runner's `catchUp()` that `stop()` ended rejects with, once the batch in hand
 * committed (or, past the drain deadline, rolled back: `cause`): `details.applied` counts what it
 * committed (it stays applied), `unit` names what that counts in the message ('record(s)').
 * A rejection rather than that count: a count says the log was caught up, and a command line
 * that rebuilds and then reports the model current must not take a catch-up cut short for one.
 */
export function catchUpStopped(name: string, applied: number, unit: string, cause?: unknown): KeelError {
  return new KeelError(
    'KEEL_SERVICE_STATE',
    `${name} stopped catching up: it was stopped after applying ${applied} ${unit}, before it had caught up`,
    { cause, details: { applied } },
  );
}
