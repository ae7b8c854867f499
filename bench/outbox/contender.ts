// What bench/outbox needs from each outbox implementation: a business transaction that writes a
// row, a relay (one or more instances) moving rows to the PostgreSQL queue, and a count of rows
// not yet published, read from its own table.
import type { Envelope } from '../../src/messaging/index.ts';

/** The publish step every contender calls: keel's PgQueue, wrapped to time each message. */
export type Publish = (destination: string, messages: readonly Envelope[]) => Promise<void>;

export interface Contender {
  readonly name: string;
  /** How it is configured, for the printed method. */
  readonly how: string;
  /** Creates its tables in `schema` (fresh) and connects; `publish` is where relays send rows. */
  open(schema: string, url: string, publish: Publish): Promise<Instance>;
}

export interface Instance {
  /** Commits `count` rows, `perTx` per transaction (the business transaction's outbox write). */
  commit(messages: readonly Envelope[]): Promise<void>;
  /** Starts `relays` relay instances. */
  startRelays(relays: number): Promise<void>;
  /** Rows committed and not yet published. */
  unpublished(): Promise<number>;
  /** Stops relays and closes connections. */
  close(): Promise<void>;
}
