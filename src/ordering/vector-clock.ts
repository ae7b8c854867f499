import { InvalidArgumentError } from '../errors/index.ts';

/** How two vector clocks relate: one happened before the other, they are the same, or neither saw the other. */
export type VectorOrder = 'before' | 'after' | 'equal' | 'concurrent';

/** The JSON form of a vector clock: node id → counter, zero counters left out, keys sorted. */
export type VectorClockJson = Readonly<Record<string, number>>;

/**
 * A vector clock (Fidge, Mattern, 1988): one counter per node. Unlike a Lamport time it
 * characterises causality exactly: `a.compare(b) === 'before'` if and only if a's event
 * happened before b's, and `'concurrent'` when neither saw the other, which is how to detect
 * conflicting writes.
 *
 * An immutable value: `increment` and `merge` return new clocks. A node missing from the clock
 * has counter 0, so `{}` and `{ a: 0 }` are the same clock. Its size grows with the number of
 * nodes that ever wrote, so use it where that set is small (replicas of a record, not clients).
 */
export class VectorClock {
  static readonly empty: VectorClock = new VectorClock(new Map());

  // Never mutated after construction; only non-zero counters are stored.
  readonly #counters: ReadonlyMap<string, number>;

  private constructor(counters: ReadonlyMap<string, number>) {
    this.#counters = counters;
  }

  /** Builds a clock from node → counter pairs (an object or entries); validates every entry. */
  static of(counters: VectorClockJson | Iterable<readonly [string, number]>): VectorClock {
    if (typeof counters !== 'object' || counters === null) {
      throw new InvalidArgumentError('counters', 'an object or entries of node id to counter', counters);
    }
    const entries: Iterable<readonly [string, number]> =
      Symbol.iterator in counters ? counters : Object.entries(counters);
    const map = new Map<string, number>();
    for (const [node, counter] of entries) {
      assertNode(node);
      assertCounter(`counters.${node}`, counter);
      if (counter > 0) map.set(node, counter);
    }
    return new VectorClock(map);
  }

  /** Parses the JSON form (`toJSON()`), from a value already `JSON.parse`d. Throws `InvalidArgumentError` when malformed. */
  static fromJSON(value: unknown): VectorClock {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new InvalidArgumentError('vectorClock', 'an object of node id to counter', value);
    }
    const map = new Map<string, number>();
    for (const [node, counter] of Object.entries(value)) {
      assertNode(node);
      if (typeof counter !== 'number') {
        throw new InvalidArgumentError(`vectorClock.${node}`, 'a safe integer >= 0', counter);
      }
      assertCounter(`vectorClock.${node}`, counter);
      if (counter > 0) map.set(node, counter);
    }
    return new VectorClock(map);
  }

  /** The counter of `node`; 0 when the node never ticked. */
  get(node: string): number {
    return this.#counters.get(node) ?? 0;
  }

  /** The nodes with a non-zero counter, sorted. */
  get nodes(): string[] {
    return [...this.#counters.keys()].sort();
  }

  /** A local event (or send) at `node`: a new clock with that node's counter one higher. */
  increment(node: string): VectorClock {
    assertNode(node);
    const next = this.get(node) + 1;
    if (!Number.isSafeInteger(next))
      throw new InvalidArgumentError(`counters.${node}`, 'room to increment', next);
    const map = new Map(this.#counters);
    map.set(node, next);
    return new VectorClock(map);
  }

  /**
   * The least upper bound of two clocks: each node's larger counter. On receive, merge the
   * sender's clock, then `increment` the receiver's own node.
   */
  merge(other: VectorClock): VectorClock {
    VectorClock.#assert(other);
    const map = new Map(this.#counters);
    for (const [node, counter] of other.#counters) {
      if (counter > (map.get(node) ?? 0)) map.set(node, counter);
    }
    return new VectorClock(map);
  }

  /** `'before'` when this clock happened before `other`, `'after'` when after, else `'equal'` or `'concurrent'`. */
  compare(other: VectorClock): VectorOrder {
    VectorClock.#assert(other);
    let less = false;
    let greater = false;
    for (const [node, counter] of this.#counters) {
      const theirs = other.get(node);
      if (counter < theirs) less = true;
      else if (counter > theirs) greater = true;
    }
    for (const [node, counter] of other.#counters) {
      if (!this.#counters.has(node) && counter > 0) less = true;
    }
    if (less && greater) return 'concurrent';
    if (less) return 'before';
    if (greater) return 'after';
    return 'equal';
  }

  /** True when every counter equals the other clock's. */
  equals(other: VectorClock): boolean {
    return this.compare(other) === 'equal';
  }

  /** The JSON form: node → counter with keys sorted and zero counters left out, so equal clocks serialise the same. */
  toJSON(): VectorClockJson {
    // fromEntries defines own properties, so a node named `__proto__` stays a plain key.
    return Object.fromEntries(this.nodes.map((node) => [node, this.#counters.get(node)!]));
  }

  toString(): string {
    return JSON.stringify(this.toJSON());
  }

  // Its JSON form passed where a clock is meant would otherwise fail on the private field, untyped.
  static #assert(other: unknown): void {
    if (typeof other !== 'object' || other === null || !(#counters in other)) {
      throw new InvalidArgumentError(
        'other',
        'a VectorClock (VectorClock.fromJSON reads its JSON form)',
        other,
      );
    }
  }
}

function assertNode(node: string): void {
  if (typeof node !== 'string' || node.length === 0) {
    throw new InvalidArgumentError('node', 'a non-empty string', node);
  }
}

function assertCounter(field: string, counter: number): void {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new InvalidArgumentError(field, 'a safe integer >= 0', counter);
  }
}
