import type { FastifyInstance } from 'fastify';
import { ServiceBase } from '../../../../src/service/index.ts';

export interface HttpServerOptions {
  port: number;
  host: string;
}

/**
 * The fastify app as a service: listens on start; on stop, closes the listener, lets in-flight
 * requests finish within the drain budget, then closes idle and remaining connections.
 */
export class HttpServer extends ServiceBase {
  readonly app: FastifyInstance;
  readonly #options: HttpServerOptions;
  #address: string | undefined;

  constructor(app: FastifyInstance, options: HttpServerOptions) {
    super('http');
    this.app = app;
    this.#options = options;
  }

  /** `http://host:port` once listening; the real port when 0 was asked for. */
  get address(): string {
    if (this.#address === undefined) throw new Error('http server is not listening');
    return this.#address;
  }

  protected override async onStart(): Promise<void> {
    this.#address = await this.app.listen({ port: this.#options.port, host: this.#options.host });
  }

  protected override async onStop(drain: AbortSignal): Promise<void> {
    drain.addEventListener('abort', () => this.app.server.closeAllConnections(), { once: true });
    await this.app.close();
  }
}
