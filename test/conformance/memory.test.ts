import { MemoryBroker } from '../../src/messaging/adapters/memory/index.ts';
import { describeBrokerConformance } from '../../src/testing/index.ts';

describeBrokerConformance({
  name: 'memory',
  open: async () => new MemoryBroker(),
});
