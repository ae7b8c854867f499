// The payment provider as its own HTTP service, failing and stalling as KEEL_PAYMENTS_* say;
// the shop calls it when KEEL_PAYMENTS_URL points here. `npm run payment-provider`.
import { runUntilSignal } from '../../../src/service/index.ts';
import { createLogger } from '../logger.ts';
import { providerConfigFromEnv } from '../payments/provider-config.ts';
import { openPaymentProvider } from '../payments/provider-service.ts';

try {
  const config = providerConfigFromEnv();
  const provider = await openPaymentProvider(config, { logger: createLogger({ name: 'payment-provider' }) });
  await runUntilSignal(provider, { drainMs: Number(process.env.KEEL_DRAIN_MS ?? 10_000) });
  process.stdout.write(`payment provider on ${provider.address}, faults ${JSON.stringify(config.faults)}\n`);
} catch (error) {
  process.stderr.write(
    `payment provider failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
}
