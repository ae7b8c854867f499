// Test fixture: a consumer process that claims one record and then waits to be killed (SIGKILL),
// leaving its group membership to expire. Run by test/integration/kafka-broker.test.ts with tsx.
import { KafkaBroker } from './index.ts';

const [destination, leaseMs] = process.argv.slice(2);
const broker = new KafkaBroker();
const source = broker.source(destination!, { leaseMs: Number(leaseMs) });
await source.open(() => undefined);
for (;;) {
  const [delivery] = await source.claim(1);
  if (delivery !== undefined) {
    process.stdout.write(`claimed ${delivery.envelope.id}\n`);
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
}
setInterval(() => undefined, 60_000);
