// The shop as a newcomer or the image runs it: a process of its own, found by its first screen.
import { spawn } from 'node:child_process';

export interface ShopProcess {
  /** Where the API listens, read from the first screen. */
  readonly address: string;
  /** What it printed so far. */
  output(): string;
  /** SIGTERM, then its exit code (the shop drains and exits 0). */
  stop(): Promise<number | null>;
  /**
   * Resolves once its output is closed by every process that held it: the one started and any
   * it started in turn (`npm start` runs the shop two processes down).
   */
  closed(): Promise<void>;
  /** SIGKILL to every process of its group (with `ownGroup`), ending all it started; for clean-up. */
  killGroup(): void;
}

/**
 * Starts `node <args>` (or `command <args>`) and resolves once its first screen names the API's
 * address.
 */
export async function startShopProcess(
  args: readonly string[],
  options: { cwd: string; env: Record<string, string>; command?: string; ownGroup?: boolean },
): Promise<ShopProcess> {
  const shop = spawn(options.command ?? process.execPath, args, {
    cwd: options.cwd,
    // A process group of its own: what it starts can be ended with it, whatever became of it.
    detached: options.ownGroup === true,
    env: { ...process.env, PORT: '0', KEEL_DB: 'pglite', LOG_LEVEL: 'warn', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => shop.once('exit', resolve));
  const closed = Promise.all(
    [shop.stdout, shop.stderr].map((pipe) => new Promise<void>((resolve) => pipe.once('close', resolve))),
  ).then(() => undefined);
  let output = '';
  const killGroup = (): void => {
    try {
      if (options.ownGroup === true && shop.pid !== undefined) process.kill(-shop.pid, 'SIGKILL');
      else shop.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  };
  try {
    const address = await new Promise<string>((resolve, reject) => {
      shop.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const listening = /API {8}(http:\/\/\S+)/.exec(output);
        if (listening) resolve(listening[1]!);
      });
      shop.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      void exited.then((code) =>
        reject(new Error(`the shop exited (${code}) before it listened:\n${output}`)),
      );
    });
    return {
      address,
      output: () => output,
      stop: async () => {
        shop.kill('SIGTERM');
        return exited;
      },
      closed: () => closed,
      killGroup,
    };
  } catch (error) {
    killGroup();
    throw error;
  }
}

/** POSTs the order the first screen suggests, under `key`. */
export function postOrder(address: string, key: string): Promise<Response> {
  return fetch(`${address}/v1/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ customerId: 'c-1', items: [{ sku: 'book-1', quantity: 1 }] }),
  });
}
