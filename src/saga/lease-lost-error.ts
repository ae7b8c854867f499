import { KeelError } from '../errors/index.ts';

/** The lease of an instance went to another runner: the reason this runner's work on it was aborted. */
export class LeaseLostError extends KeelError {
  constructor(instanceId: string) {
    super('KEEL_ABORTED', `saga instance ${instanceId}: the lease was lost to another runner`, {
      details: { instanceId },
    });
  }
}
