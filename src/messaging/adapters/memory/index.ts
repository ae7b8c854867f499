export { MemoryBroker } from './memory-broker.ts';
