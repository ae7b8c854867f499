import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { KeelError, problemContentType, toProblemDetails } from '../../../src/errors/index.ts';
import { sleep, systemClock, type Clock } from '../../../src/time/index.ts';
import type { PaymentProvider } from '../application/payment-provider.ts';
import type { Db } from '../../../src/db/index.ts';
import { healthRoutes } from '../transport/http/health-routes.ts';
import { installProblemHandler } from '../transport/http/problem-handler.ts';
import { parseRequest } from '../transport/http/parse.ts';
import type { Fault, FaultPlan } from './fault-plan.ts';
import { chargeRequest, chargesPath, refundRequest, refundsPath } from './provider-contract.ts';

export interface ProviderAppOptions {
  /** The ledger that charges once per key. */
  provider: PaymentProvider;
  /** Which requests fail, stall or are dropped. */
  faults: FaultPlan;
  /** Times the stalls. Default: the system clock. */
  clock?: Clock;
  /** Default: none (silent). */
  logger?: FastifyBaseLogger;
  /** Health routes `/healthz` and `/readyz` (never faulty): the database they check, and whether the service runs. */
  health?: { db: Db; isReady: () => boolean };
}

/**
 * The payment provider as an HTTP service (`provider-contract.ts`), misbehaving as `faults`
 * says: dropped connections, `503`s and late answers. Builds the app; `PaymentProviderService` listens.
 */
export function buildProviderApp(options: ProviderAppOptions): FastifyInstance {
  const { provider, faults } = options;
  const clock = options.clock ?? systemClock;
  const app = Fastify({
    ...(options.logger === undefined ? {} : { loggerInstance: options.logger }),
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  installProblemHandler(app);
  // Drawn once per request, read again when it is answered; dies with the request.
  const drawn = new WeakMap<FastifyRequest, Fault>();

  if (options.health !== undefined) void app.register(healthRoutes, options.health);

  // Before the body is read: a provider that is down or failing has charged nothing. Only the
  // API misbehaves: probes that failed on purpose would get the process restarted.
  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/v1/')) return undefined;
    const fault = faults.next();
    drawn.set(request, fault);
    if (fault.kind === 'down') {
      reply.hijack();
      request.raw.socket.destroy();
      return reply;
    }
    if (fault.kind === 'fail') {
      const problem = toProblemDetails(
        new KeelError('KEEL_UPSTREAM_FAILED', 'the payment provider failed this request on purpose'),
        request.url,
      );
      return reply
        .status(503)
        .type(problemContentType)
        .send({ ...problem, status: 503, title: 'Service unavailable' });
    }
    return undefined;
  });

  app.post(chargesPath, async (request, reply) => {
    const idempotencyKey = request.headers['idempotency-key'];
    if (typeof idempotencyKey !== 'string' || idempotencyKey.length === 0 || idempotencyKey.length > 255) {
      throw new KeelError(
        'KEEL_IDEMPOTENCY_KEY_REQUIRED',
        'a charge needs an Idempotency-Key header of 1 to 255 characters',
      );
    }
    const charge = parseRequest(chargeRequest, request.body, 'request body');
    const payment = await provider.charge(charge, { idempotencyKey });
    return answer(reply, payment.status === 'DECLINED' ? 402 : 200, payment, drawn.get(request), clock);
  });

  app.post(refundsPath, async (request, reply) => {
    const { chargeKey } = parseRequest(refundRequest, request.body, 'request body');
    return answer(reply, 200, { refunded: await provider.refund(chargeKey) }, drawn.get(request), clock);
  });

  return app;
}

/**
 * Sends the answer, after the stall when the request drew one. The effect is already applied:
 * a stall past the client's timeout is the answer lost after the charge, which only the
 * idempotency key keeps from becoming a second charge.
 */
async function answer(
  reply: FastifyReply,
  status: number,
  body: unknown,
  fault: Fault | undefined,
  clock: Clock,
): Promise<FastifyReply> {
  if (fault?.kind === 'stall') {
    const gone = new AbortController();
    // The client gave up, or the server is closing its connections: nobody will read the answer.
    const onClose = (): void => gone.abort();
    reply.raw.once('close', onClose);
    try {
      await sleep(fault.ms, { clock, signal: gone.signal });
    } catch {
      reply.hijack();
      return reply;
    } finally {
      reply.raw.off('close', onClose);
    }
  }
  return reply.status(status).send(body);
}
