import type { Tx } from '../db/db.ts';
import type { Envelope } from './envelope.ts';

/**
 * A read model built by replaying a log: a `PgStream`, a Kafka topic. Its runner calls both
 * methods inside the transaction that also moves the projection's stored position, so a read
 * model in the same database sees each entry once: the batch and the new position commit
 * together, or neither does.
 *
 * `Entry` is the log's own entry (its envelope and where it sits: a stream position, a partition
 * and an offset).
 */
export interface Projection<Entry extends { readonly envelope: Envelope }> {
  /**
   * Applies `entries` to the read model with `tx`: in log order (per partition, for a log that
   * has partitions), none skipped after the stored position. A throw rolls the batch back and
   * the runner tries it again after its retry delay, so an entry that can never apply stops the
   * projection there: record and pass over what cannot be read. Logs keep what they are given,
   * so an at-least-once publisher can leave an envelope twice: deduplicate on `envelope.id` or
   * apply idempotently.
   */
  apply(entries: readonly Entry[], tx: Tx): Promise<void>;
  /** Empties the read model with `tx`: a rebuild calls it as it sets the position back to the start. */
  reset(tx: Tx): Promise<void>;
}
