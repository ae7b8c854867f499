// pg-boss with many schedules, in a process of its own: its K polling workers (one a queue) must
// not share an event loop with the keel schedulers measured in the same minute.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Effect, EffectSink } from './effect.ts';

/** What the parent tells the child. */
export type ToBurst = { kind: 'schedule'; cron: string } | { kind: 'stop' };
/** What the child tells the parent. */
export type FromBurst =
  | { kind: 'ready' }
  | { kind: 'scheduled' }
  | { kind: 'effect'; effect: Effect }
  | { kind: 'error'; message: string }
  | { kind: 'stopped' };

/** `<prefix>0001` … : the names of `count` schedules (and, for pg-boss, of their queues). */
export function scheduleNames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(4, '0')}`);
}

/** The parent's handle on the child process that runs pg-boss. */
export class PgBossBurst {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #waiting: { kind: FromBurst['kind']; resolve: () => void } | undefined;

  private constructor(child: ChildProcess, log: EffectSink, onError: (error: unknown) => void) {
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.on('message', (message: FromBurst) => {
      if (message.kind === 'effect') log.record(message.effect);
      else if (message.kind === 'error') onError(new Error(message.message));
      else if (message.kind === this.#waiting?.kind) {
        const { resolve } = this.#waiting;
        this.#waiting = undefined;
        resolve();
      }
    });
  }

  /**
   * Forks the child, which starts pg-boss in `schema` with a queue and a worker for each of
   * `count` schedules named `<prefix>0001`…; resolves once they all run.
   */
  static async fork(
    url: string,
    schema: string,
    prefix: string,
    count: number,
    log: EffectSink,
    onError: (error: unknown) => void,
  ): Promise<PgBossBurst> {
    const entry = fileURLToPath(new URL('./pg-boss-burst-process.ts', import.meta.url));
    // The parent's execArgv (tsx's loader) is inherited, so the child runs TypeScript too.
    const child = fork(entry, [url, schema, prefix, String(count)], { stdio: 'inherit' });
    const burst = new PgBossBurst(child, log, onError);
    await burst.#answer('ready');
    return burst;
  }

  /** Schedules every queue on `cron` (UTC); resolves once all are. */
  async schedule(cron: string): Promise<void> {
    const scheduled = this.#answer('scheduled');
    this.#send({ kind: 'schedule', cron });
    await scheduled;
  }

  /** Stops pg-boss and waits for the child to exit (ends it after 15 s). */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#send({ kind: 'stop' });
    const timer = setTimeout(() => this.#child.kill(), 15_000);
    await this.#exited;
    clearTimeout(timer);
  }

  #send(message: ToBurst): void {
    this.#child.send(message);
  }

  #answer(kind: FromBurst['kind']): Promise<void> {
    return Promise.race([
      new Promise<void>((resolve) => (this.#waiting = { kind, resolve })),
      this.#exited.then(() => {
        throw new Error(`the pg-boss process exited before it answered ${kind}`);
      }),
    ]);
  }
}
