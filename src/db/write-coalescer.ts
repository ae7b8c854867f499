/** The part of a socket this needs: node's Writable cork/uncork. */
interface Corkable {
  cork(): void;
  uncork(): void;
}

/**
 * Gathers the messages a connection writes during one turn of the event loop into one socket
 * write. With pipelining, the statements of a transaction that nobody waits for between (BEGIN
 * and the first statement; writes sent without waiting and the COMMIT) go out together: one
 * syscall and one packet instead of one per statement, which on a busy machine is a large share
 * of a short transaction's CPU.
 *
 * The socket is corked at the first write of a turn and uncorked in the check phase of the same
 * turn (setImmediate), after every promise continuation the callback chained has run: a
 * statement issued after `await` of something already resolved still joins the batch.
 */
export class WriteCoalescer {
  readonly #socket: Corkable;
  #corked = false;

  constructor(socket: Corkable) {
    this.#socket = socket;
  }

  /** Call before writing: the writes of this turn go out together. */
  hold(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#socket.cork();
    setImmediate(() => {
      this.#corked = false;
      this.#socket.uncork();
    });
  }
}
