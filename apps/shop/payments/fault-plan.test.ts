import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors/index.ts';
import { FaultPlan, wellBehaved } from './fault-plan.ts';

/** A random source that returns the given values in turn and counts the draws. */
function scripted(...values: number[]): (() => number) & { draws: number } {
  const random = Object.assign(
    () => {
      const value = values[random.draws++];
      if (value === undefined)
        throw new Error(`random drawn ${random.draws} times, scripted for ${values.length}`);
      return value;
    },
    { draws: 0 },
  );
  return random;
}

describe('FaultPlan', () => {
  it('behaves well by default and draws no randomness for it', () => {
    const random = scripted();
    const plan = new FaultPlan({}, random);
    expect(plan.settings).toEqual(wellBehaved);
    for (let i = 0; i < 5; i++) expect(plan.next()).toEqual({ kind: 'none' });
    expect(random.draws).toBe(0);
  });

  it('fails below the fail rate, else stalls below the stall rate, one draw each', () => {
    const random = scripted(0.29, 0.3, 0.49, 0.3, 0.5, 0.99, 0);
    const plan = new FaultPlan({ failRate: 0.3, stallRate: 0.5, stallMs: 1500 }, random);
    expect(plan.next()).toEqual({ kind: 'fail' }); // 0.29 < 0.3
    expect(plan.next()).toEqual({ kind: 'stall', ms: 1500 }); // 0.3 passes, 0.49 < 0.5
    expect(plan.next()).toEqual({ kind: 'none' }); // 0.3 passes, 0.5 passes
    expect(plan.next()).toEqual({ kind: 'stall', ms: 1500 }); // 0.99 passes, 0 < 0.5
    expect(random.draws).toBe(7);
  });

  it('is down before anything else, and comes back when told', () => {
    const random = scripted(0.9, 0.9);
    const plan = new FaultPlan({ failRate: 0.5, down: true }, random);
    expect(plan.next()).toEqual({ kind: 'down' });
    expect(random.draws).toBe(0);
    plan.set({ down: false });
    expect(plan.next()).toEqual({ kind: 'none' });
    expect(plan.settings).toEqual({ failRate: 0.5, stallRate: 0, stallMs: 0, down: false });
  });

  it('a stall rate without a stall time stalls nothing', () => {
    const plan = new FaultPlan({ stallRate: 1 }, scripted());
    expect(plan.next()).toEqual({ kind: 'none' });
  });

  it('refuses bad settings naming the field, and a refused change changes nothing', () => {
    expect(() => new FaultPlan({ failRate: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => new FaultPlan({ failRate: Number.NaN })).toThrow('failRate: expected a number from 0 to 1');
    expect(() => new FaultPlan({ stallRate: -0.1 })).toThrow('stallRate: expected a number from 0 to 1');
    expect(() => new FaultPlan({ stallMs: 2.5 })).toThrow('stallMs: expected an integer number of ms >= 0');
    expect(() => new FaultPlan({ down: 'yes' as unknown as boolean })).toThrow(
      'down: expected true or false',
    );
    expect(() => new FaultPlan({}, 0.5 as unknown as () => number)).toThrow('random: expected a function');
    const plan = new FaultPlan({ failRate: 0.3 });
    expect(() => plan.set({ failRate: 0.1, stallMs: -1 })).toThrow('stallMs');
    expect(plan.settings.failRate).toBe(0.3);
  });
});
