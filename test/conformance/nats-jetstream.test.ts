// The shared broker conformance suite against the real NATS server. It sits beside the adapter
// (rather than in test/conformance/) so that `vitest run src/messaging/adapters/nats` runs it.
import { afterAll, beforeAll } from 'vitest';
import { describeBrokerConformance, type TcpProxy } from '../../src/testing/index.ts';
import { NatsJetStreamBroker } from '../../src/messaging/adapters/nats/index.ts';
import {
  deleteStreamsWithPrefix,
  dropConnections,
  proxyServers,
  requireNats,
  startNatsProxy,
  testPrefix,
} from '../../src/messaging/adapters/nats/test-support.ts';

const prefix = testPrefix();
let proxy: TcpProxy | undefined;

beforeAll(async () => {
  await requireNats();
  proxy = await startNatsProxy();
});
afterAll(async () => {
  await proxy?.close();
  await deleteStreamsWithPrefix(prefix);
}, 30_000);

describeBrokerConformance({
  name: 'nats-jetstream',
  open: async () =>
    new NatsJetStreamBroker({ servers: proxyServers(proxy!), prefix, name: `keel-conformance ${prefix}` }),
  // Cuts every connection of this run at the TCP level: the client sees a server restart (the
  // server itself stays up for other test files). A real stop and start of nats-server runs in
  // nats-restart.test.ts.
  restart: async () => {
    // Zero would mean the cut did not happen and the scenario proved nothing.
    if (dropConnections(proxy!) === 0) throw new Error('no connection through the proxy to cut');
  },
});
