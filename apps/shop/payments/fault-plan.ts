import { InvalidArgumentError } from '../../../src/errors/index.ts';
import type { Random } from '../../../src/time/index.ts';

/** How badly the payment provider service behaves, on purpose. Every field has a default of "well". */
export interface FaultSettings {
  /** Share of requests answered `503` before anything is charged, in [0, 1]. Default 0. */
  failRate: number;
  /** Share of the other requests answered late, in [0, 1]. Default 0. */
  stallRate: number;
  /** How late a stalled request is answered, in ms: past the client's timeout to lose the answer. Default 0. */
  stallMs: number;
  /** Drop every connection without an answer, as a provider that went away does. Default false. */
  down: boolean;
}

/** What happens to one request. */
export type Fault =
  | { kind: 'none' }
  | { kind: 'down' }
  | { kind: 'fail' }
  /** The request is served, then answered `ms` later. */
  | { kind: 'stall'; ms: number };

export const wellBehaved: FaultSettings = { failRate: 0, stallRate: 0, stallMs: 0, down: false };

/**
 * The faults of the provider service: settings that may change while it runs (a test takes the
 * provider down and brings it back), and the draw for each request from an injected random
 * source, so a unit test decides exactly which request fails.
 */
export class FaultPlan {
  #settings: FaultSettings;
  readonly #random: Random;

  constructor(settings: Partial<FaultSettings> = {}, random: Random = Math.random) {
    if (typeof random !== 'function')
      throw new InvalidArgumentError('random', 'a function returning [0, 1)', random);
    this.#settings = checkFaults({ ...wellBehaved, ...settings });
    this.#random = random;
  }

  get settings(): FaultSettings {
    return this.#settings;
  }

  /** Changes some settings from the next request on; bad values throw and change nothing. */
  set(settings: Partial<FaultSettings>): void {
    this.#settings = checkFaults({ ...this.#settings, ...settings });
  }

  /** Draws the fate of the next request: down, then failure, then stall, one draw each. */
  next(): Fault {
    const { down, failRate, stallRate, stallMs } = this.#settings;
    if (down) return { kind: 'down' };
    // A draw only when the rate can matter: a plan with no faults consumes no randomness.
    if (failRate > 0 && this.#random() < failRate) return { kind: 'fail' };
    if (stallRate > 0 && stallMs > 0 && this.#random() < stallRate) return { kind: 'stall', ms: stallMs };
    return { kind: 'none' };
  }
}

function checkFaults(settings: FaultSettings): FaultSettings {
  for (const field of ['failRate', 'stallRate'] as const) {
    const value = settings[field];
    if (typeof value !== 'number' || !(value >= 0 && value <= 1))
      throw new InvalidArgumentError(field, 'a number from 0 to 1', value);
  }
  if (typeof settings.stallMs !== 'number' || !Number.isInteger(settings.stallMs) || settings.stallMs < 0)
    throw new InvalidArgumentError('stallMs', 'an integer number of ms >= 0', settings.stallMs);
  if (typeof settings.down !== 'boolean')
    throw new InvalidArgumentError('down', 'true or false', settings.down);
  return Object.freeze({ ...settings });
}
