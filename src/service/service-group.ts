import type { Service, ServiceState, StopOptions } from './service.ts';
import { defaultDrainMs } from './service.ts';
import { reportsHealth, type ReportsHealth, type ServiceHealth } from './service-health.ts';

/**
 * Several services run as one: started in the order given, stopped in reverse, so a consumer
 * stops before the database it writes to closes. A failed start stops what already started.
 */
export class ServiceGroup implements Service, ReportsHealth {
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

  /** The health of each member that reports one (`health()`), by name, in start order. */
  healthOfParts(): Record<string, ServiceHealth> {
    const parts: Record<string, ServiceHealth> = {};
    for (const service of this.#services) if (reportsHealth(service)) parts[service.name] = service.health();
    return parts;
  }

  /**
   * 'ok' while running and every member that reports health is ok; else 'failing', naming the
   * member failing longest (`dependency` is `member/dependency`); 'not-running' when the group
   * is not running. A member that stopped while the group runs counts as failing.
   */
  health(): ServiceHealth {
    if (this.#state !== 'running') return { status: 'not-running', state: this.#state };
    let failing: Extract<ServiceHealth, { status: 'failing' }> | undefined;
    let lastContactAt: number | undefined;
    for (const [name, part] of Object.entries(this.healthOfParts())) {
      if (part.status === 'ok') {
        if (part.lastContactAt !== undefined)
          lastContactAt = Math.max(lastContactAt ?? 0, part.lastContactAt);
        continue;
      }
      const asFailing: Extract<ServiceHealth, { status: 'failing' }> =
        part.status === 'failing'
          ? { ...part, dependency: `${name}/${part.dependency}` }
          : {
              status: 'failing',
              dependency: name,
              during: `state ${part.state}`,
              // When it stopped is not known here: 0 sorts it first, as failing longest.
              since: 0,
              failures: 0,
              lastError: undefined,
              lastContactAt: undefined,
            };
      if (failing === undefined || asFailing.since < failing.since) failing = asFailing;
    }
    return failing ?? { status: 'ok', lastContactAt };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
