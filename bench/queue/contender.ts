// What bench/queue needs from each queue library: enqueue, work, and a way to see that the
// queue is empty in the database (so "drained" means completed, not merely handed to a handler).

/** Every job carries the time (performance.now(), this process) just before it was enqueued. */
export interface JobPayload {
  t: number;
}

/** One configuration of one library, set up in a schema of its own. */
export interface Contender {
  /** `keel`, `pg-boss`, `graphile-worker`. */
  readonly system: string;
  /** `defaults` or `tuned`. */
  readonly variant: 'defaults' | 'tuned';
  /** Printed name when not `<system> <variant>` (a second tuned configuration). */
  readonly name?: string;
  /** How it is configured, for the printed method. */
  readonly how: string;
  /** Creates the library's tables in `schema` (fresh, just created) and connects. */
  open(schema: string, url: string): Promise<Instance>;
}

export interface Instance {
  /** Enqueues `count` jobs with the library's bulk API, in chunks of `chunk`. */
  enqueueBulk(count: number, chunk: number, payload: () => JobPayload): Promise<void>;
  /** Enqueues one job with the library's single-job API. */
  enqueueOne(payload: JobPayload): Promise<void>;
  /** Starts consuming; `onJob` is the no-op handler's only work. Resolves once started. */
  startWorker(onJob: (payload: JobPayload) => void): Promise<void>;
  /** Jobs not yet completed (ready, locked or in flight), read from the library's tables. */
  remaining(): Promise<number>;
  /** Stops the worker (if any) and closes every connection. */
  close(): Promise<void>;
}
