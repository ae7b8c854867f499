import type { Service, ServiceState, StopOptions } from './service.ts';
import { defaultDrainMs } from './service.ts';

/**
 * Several services run as one: started in the order given, stopped in reverse, so a consumer
 * stops before the database it writes to closes. A failed start stops what already started.
 */
export class ServiceGroup implements Service {
  readonly name: string;
  readonly #services: readonly Service[];
  #state: ServiceState = 'idle';
  #stopping: Promise<void> | undefined;

  constructor(name: string, services: readonly Service[]) {
    this.name = name;
    this.#services = services;
  }

  get state(): ServiceState {
    return this.#state;
  }

  async start(): Promise<void> {
    if (this.#state === 'running') return;
    this.#state = 'starting';
    const started: Service[] = [];
    try {
      for (const service of this.#services) {
        await service.start();
        started.push(service);
      }
      this.#state = 'running';
    } catch (error) {
      for (const service of started.reverse()) await service.stop({ drainMs: 0 }).catch(() => undefined);
      this.#state = 'failed';
      throw error;
    }
  }

  /** Each member gets the full drain budget in turn, minus what the members before it used. */
  stop(options: StopOptions = {}): Promise<void> {
    this.#stopping ??= (async () => {
      this.#state = 'stopping';
      const budget = options.drainMs ?? defaultDrainMs;
      const began = performance.now();
      for (const service of [...this.#services].reverse()) {
        const left = Math.max(0, budget - (performance.now() - began));
        await service.stop({ drainMs: left });
      }
      this.#state = 'stopped';
    })();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
