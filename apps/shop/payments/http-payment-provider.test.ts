import { describe, expect, it } from 'vitest';
import { AbortedError, InvalidArgumentError, isKeelError } from '../../../src/errors/index.ts';
import { BrokenCircuitError, TimeoutError } from '../../../src/resilience/index.ts';
import { ManualClock } from '../../../src/time/index.ts';
import type { Payment } from '../storage/payments-store.ts';
import { HttpPaymentProvider, type HttpPaymentProviderOptions } from './http-payment-provider.ts';
import { UpstreamFailedError } from './provider-outcome.ts';

const orderId = '0190a7c6-0000-7000-8000-000000000001';
const request = { orderId, customerId: 'c-1', amountCents: 1500 };
const key = 'order-fulfilment:x:take-payment:action';

const payment = (status: Payment['status'] = 'CHARGED'): Payment => ({
  id: '0190a7c6-0000-7000-8000-0000000000aa',
  idempotencyKey: key,
  orderId,
  customerId: 'c-1',
  amountCents: 1500,
  status,
  declineReason: status === 'DECLINED' ? 'card declined' : null,
});

type Answer = Response | Error | 'hang';

/** A fetch that answers from a script, records every call, and honours the signal as undici does. */
function scriptedFetch(...answers: Answer[]) {
  const calls: { url: string; headers: Record<string, string>; body: unknown }[] = [];
  const fake: typeof fetch = (input, init) => {
    calls.push({
      url: input instanceof Request ? input.url : input.toString(),
      headers: init?.headers as Record<string, string>,
      body: JSON.parse(init?.body as string),
    });
    const answer = answers.shift();
    if (answer === undefined) throw new Error(`fetch called ${calls.length} times, scripted for fewer`);
    const signal = init?.signal ?? undefined;
    if (answer === 'hang') {
      return new Promise((_resolve, reject) => {
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what undici rejects with
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
  };
  return { fetch: fake, calls };
}

/** What the client reads of a response; its body resolves at once, so only the clock decides timing. */
const response = (status: number, body: string): Response =>
  ({ status, text: () => Promise.resolve(body) }) as Response;
const json = (status: number, body: unknown): Response => response(status, JSON.stringify(body));
const problem = (status: number, code: string, detail: string): Response =>
  response(status, JSON.stringify({ type: 'x', title: 'x', status, code, detail }));
const refused = (): Error =>
  new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:9') });

function client(
  fetch: typeof globalThis.fetch,
  clock: ManualClock,
  options: Partial<HttpPaymentProviderOptions> = {},
) {
  // random() = 0.5: full jitter halves each wait, 50 ms then 100 ms.
  return new HttpPaymentProvider({
    url: 'http://provider.test:4010',
    fetch,
    clock,
    random: () => 0.5,
    ...options,
  });
}

/** Settles `promise` while advancing the clock timer by timer, and returns its outcome. */
async function run<T>(
  clock: ManualClock,
  promise: Promise<T>,
): Promise<{ value?: T; error?: unknown; elapsed: number }> {
  const start = clock.now();
  let outcome: { value?: T; error?: unknown } | undefined;
  promise.then(
    (value) => (outcome = { value }),
    (error: unknown) => (outcome = { error }),
  );
  for (let i = 0; i < 100; i++) {
    await clock.advance(0);
    if (outcome !== undefined) return { ...outcome, elapsed: clock.now() - start };
    await clock.advanceToNext();
  }
  throw new Error('the call never settled');
}

describe('HttpPaymentProvider', () => {
  it('posts the charge with the idempotency key and reads the payment; a 402 is a decline', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch(json(200, payment()), json(402, payment('DECLINED')));
    const payments = client(fetch, clock);
    expect(await payments.charge(request, { idempotencyKey: key })).toEqual(payment());
    expect(calls[0]).toEqual({
      url: 'http://provider.test:4010/v1/charges',
      headers: expect.objectContaining({
        'idempotency-key': key,
        'content-type': 'application/json',
      }) as unknown,
      body: request,
    });
    expect(await payments.charge(request, { idempotencyKey: key })).toMatchObject({
      status: 'DECLINED',
      declineReason: 'card declined',
    });
    expect(payments.breaker.state.status).toBe('closed');
    payments.dispose();
  });

  it('retries a 503, a broken connection and an unreadable answer with the same key, backing off', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch(
      problem(503, 'KEEL_UPSTREAM_FAILED', 'down'),
      refused(),
      response(200, '<html>oops</html>'),
      json(200, payment()),
    );
    const payments = client(fetch, clock, { maxAttempts: 4 });
    const { value, elapsed } = await run(clock, payments.charge(request, { idempotencyKey: key }));
    expect(value).toEqual(payment());
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual([key, key, key, key]);
    // 100, 200 and 400 ms halved by the jitter.
    expect(elapsed).toBe(50 + 100 + 200);
    payments.dispose();
  });

  it('gives up after maxAttempts with the last failure, typed', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch(
      refused(),
      refused(),
      problem(502, 'KEEL_INTERNAL', 'bad gateway'),
    );
    const payments = client(fetch, clock);
    const { error } = await run(clock, payments.charge(request, { idempotencyKey: key }));
    expect(error).toBeInstanceOf(UpstreamFailedError);
    expect(error).toMatchObject({ code: 'KEEL_UPSTREAM_FAILED', upstreamStatus: 502 });
    expect(calls).toHaveLength(3);
    payments.dispose();
  });

  it('never retries a 4xx: the provider’s own keel error comes back, and the breaker does not count it', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch(
      problem(409, 'KEEL_IDEMPOTENCY_IN_FLIGHT', 'still running'),
      problem(422, 'KEEL_IDEMPOTENCY_KEY_REUSED', 'other request'),
      response(400, 'nope'),
      problem(400, 'KEEL_TIMEOUT', 'a 4xx that claims a timeout'),
    );
    const payments = client(fetch, clock, { threshold: { kind: 'consecutive', failures: 1 } });
    const codes = [];
    for (let i = 0; i < 4; i++) {
      const { error } = await run(clock, payments.charge(request, { idempotencyKey: key }));
      codes.push(isKeelError(error) ? error.code : error);
    }
    expect(codes).toEqual([
      'KEEL_IDEMPOTENCY_IN_FLIGHT',
      'KEEL_IDEMPOTENCY_KEY_REUSED',
      'KEEL_PERMANENT_FAILURE',
      'KEEL_PERMANENT_FAILURE',
    ]);
    expect(calls).toHaveLength(4);
    expect(payments.breaker.state.status).toBe('closed');
    payments.dispose();
  });

  it('an attempt that outlives its timeout is aborted and retried with the same key', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch('hang', json(200, payment()));
    const payments = client(fetch, clock, { timeoutMs: 800 });
    const { value, elapsed } = await run(clock, payments.charge(request, { idempotencyKey: key }));
    expect(value).toEqual(payment());
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual([key, key]);
    expect(elapsed).toBe(800 + 50);
    payments.dispose();
  });

  it('times out for good as KEEL_TIMEOUT once every attempt hung', async () => {
    const clock = new ManualClock();
    const { fetch } = scriptedFetch('hang', 'hang');
    const payments = client(fetch, clock, { timeoutMs: 500, maxAttempts: 2 });
    const { error } = await run(clock, payments.charge(request, { idempotencyKey: key }));
    expect(error).toBeInstanceOf(TimeoutError);
    payments.dispose();
  });

  it('opens its breaker after the threshold: calls then fail fast without a request, until a probe succeeds', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch(refused(), refused(), refused(), json(200, payment()));
    const payments = client(fetch, clock, {
      maxAttempts: 3,
      threshold: { kind: 'consecutive', failures: 3 },
      openMs: 1000,
      name: 'payments-test',
    });
    const first = await run(clock, payments.charge(request, { idempotencyKey: key }));
    expect(first.error).toMatchObject({ code: 'KEEL_UPSTREAM_FAILED' });
    expect(payments.breaker.name).toBe('payments-test');
    expect(payments.breaker.state).toMatchObject({ status: 'open', reason: 'consecutive-failures' });

    const failFast = payments.charge(request, { idempotencyKey: key });
    await expect(failFast).rejects.toBeInstanceOf(BrokenCircuitError);
    await expect(failFast).rejects.toMatchObject({ code: 'KEEL_BROKEN_CIRCUIT' });
    expect(calls).toHaveLength(3);

    await clock.advance(1000);
    expect(payments.breaker.state.status).toBe('half-open');
    expect(await payments.charge(request, { idempotencyKey: key })).toEqual(payment());
    expect(payments.breaker.state.status).toBe('closed');
    payments.dispose();
  });

  it('stops when the caller aborts: not retried, not counted against the provider', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch('hang');
    const payments = client(fetch, clock, { threshold: { kind: 'consecutive', failures: 1 } });
    const caller = new AbortController();
    const call = payments.charge(request, { idempotencyKey: key, signal: caller.signal });
    await clock.advance(100);
    caller.abort(new Error('step timed out'));
    await expect(call).rejects.toBeInstanceOf(AbortedError);
    expect(calls).toHaveLength(1);
    expect(payments.breaker.state.status).toBe('closed');
    payments.dispose();
  });

  it('refunds by the charge key', async () => {
    const clock = new ManualClock();
    const { fetch, calls } = scriptedFetch(
      problem(503, 'KEEL_UPSTREAM_FAILED', 'down'),
      json(200, { refunded: true }),
    );
    const payments = client(fetch, clock);
    expect((await run(clock, payments.refund(key))).value).toBe(true);
    expect(calls.map((c) => [c.url, c.body])).toEqual([
      ['http://provider.test:4010/v1/refunds', { chargeKey: key }],
      ['http://provider.test:4010/v1/refunds', { chargeKey: key }],
    ]);
    payments.dispose();
  });

  it('refuses bad options and a bad key, naming them', async () => {
    const { fetch } = scriptedFetch();
    expect(() => new HttpPaymentProvider({ url: 'ftp://x', fetch })).toThrow(InvalidArgumentError);
    expect(() => new HttpPaymentProvider({ url: 'not a url', fetch })).toThrow(
      'url: expected an http:// or https:// URL',
    );
    expect(() => new HttpPaymentProvider({ url: 'http://x', fetch, timeoutMs: 0 })).toThrow('timeoutMs');
    expect(() => new HttpPaymentProvider({ url: 'http://x', fetch, maxAttempts: 0 })).toThrow('maxAttempts');
    const payments = new HttpPaymentProvider({ url: 'http://x', fetch });
    await expect(payments.charge(request, { idempotencyKey: '' })).rejects.toThrow(
      'idempotencyKey: expected a string of 1 to 255 characters',
    );
    payments.dispose();
  });
});
