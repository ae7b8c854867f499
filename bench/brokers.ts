// bench/brokers: keel's broker adapters beside each engine's raw client. The work is in bench/brokers/.
export { default } from './brokers/main.ts';
