// What bench/saga needs from each workflow engine: start one 3-step instance, and know when
// every started instance has completed (its completion committed to PostgreSQL).

export interface SagaContender {
  readonly system: string;
  /** How it is configured, for the printed method. */
  readonly how: string;
  /** Creates the engine's tables in a fresh schema of its own and starts its runner/executor. */
  open(url: string, schema: string): Promise<SagaInstance>;
}

export interface SagaInstance {
  /** Starts one instance of the 3-step saga (durably recorded before it resolves). */
  start(n: number): Promise<void>;
  /** Resolves once `count` instances started since the last call have completed. */
  completed(count: number): Promise<void>;
  /** Stops the runner and closes every connection; the schema is dropped by the caller. */
  close(): Promise<void>;
}
