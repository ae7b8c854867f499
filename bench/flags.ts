// bench/flags: what a feature-flag evaluation costs with keel's provider, beside OpenFeature's
// own InMemoryProvider with the same flag written as its context evaluator.
//
// Method: one process, one flag with what a rollout has: a rule (customerId in a list of two
// staff ids) and a 10 % split by targetingKey, sticky by SHA-256 of the flag key and the
// customer (the InMemoryProvider's contextEvaluator does the same in a few lines, as a team
// would write it). 1,000 customers in turn. Two questions:
//   - through an OpenFeature client (`client.getBooleanValue`), as application code asks;
//   - the provider alone (`resolveBooleanEvaluation`), what each adds to the SDK's own cost.
// Rounds interleave the contenders after a warm-up; each figure is the fastest round, the
// median beside. Both serve the same variant to every customer (checked before timing).
import { hash } from 'node:crypto';
import {
  InMemoryProvider,
  OpenFeature,
  type EvaluationContext,
  type Provider,
} from '@openfeature/server-sdk';
import { KeelFlagProvider, type FlagDefinition } from '../src/flags/index.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 9);
const perRound = Number(process.env.BENCH_EVALUATIONS ?? 100_000);
const customers = Array.from({ length: 1000 }, (_, i) => ({
  targetingKey: `customer-${i}`,
  customerId: `c-${i}`,
}));
customers[3]!.customerId = 'staff-1';

const flag: FlagDefinition = {
  key: 'checkout.new-flow',
  enabled: true,
  variants: { on: true, off: false },
  defaultVariant: 'off',
  rules: [{ attribute: 'customerId', in: ['staff-1', 'staff-2'], variant: 'on' }],
  split: { weights: { on: 10, off: 90 } },
};

/** The same flag as a hand-written evaluator on OpenFeature's InMemoryProvider. */
function inMemoryPeer(): InMemoryProvider {
  const staff = new Set(['staff-1', 'staff-2']);
  return new InMemoryProvider({
    [flag.key]: {
      variants: { on: true, off: false },
      defaultVariant: 'off',
      disabled: false,
      contextEvaluator: (context: EvaluationContext) => {
        if (typeof context['customerId'] === 'string' && staff.has(context['customerId'])) return 'on';
        const key = context.targetingKey;
        if (key === undefined) return 'off';
        const bucket =
          Buffer.from(hash('sha256', `${flag.key}:${key}`, 'hex').slice(0, 8), 'hex').readUInt32BE(0) %
          10_000;
        return bucket < 1000 ? 'on' : 'off';
      },
    },
  });
}

type Evaluate = (context: EvaluationContext) => Promise<boolean>;

async function time(evaluate: Evaluate): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < perRound; i++) await evaluate(customers[i % customers.length]!);
  return Number(process.hrtime.bigint() - start) / perRound / 1000;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1]!;
const fmt = (micros: number): string => micros.toFixed(2);

async function compare(question: string, keel: Evaluate, peer: Evaluate): Promise<void> {
  for (const context of customers) {
    if ((await keel(context)) !== (await peer(context)))
      throw new Error(`the contenders disagree for ${context.targetingKey}`);
  }
  await time(keel);
  await time(peer);
  const keelRounds: number[] = [];
  const peerRounds: number[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      keelRounds.push(await time(keel));
      peerRounds.push(await time(peer));
    } else {
      peerRounds.push(await time(peer));
      keelRounds.push(await time(keel));
    }
  }
  const keelBest = Math.min(...keelRounds);
  const peerBest = Math.min(...peerRounds);
  console.log(
    `  ${question}: keel ${fmt(keelBest)} µs (median ${fmt(median(keelRounds))}), InMemoryProvider ${fmt(peerBest)} µs (median ${fmt(median(peerRounds))})`,
  );
  console.log(
    `bench: ${question} (lower is better) | keel ${fmt(keelBest)} µs | OpenFeature InMemoryProvider ${fmt(peerBest)} µs | ratio ${(peerBest / keelBest).toFixed(2)}`,
  );
}

export default async function main(): Promise<void> {
  console.log(
    [
      "bench/flags: a flag evaluation (a rule and a 10 % sticky split) with keel's provider and with OpenFeature's InMemoryProvider",
      `  ${rounds} interleaved rounds of ${perRound.toLocaleString('en')} evaluations over 1,000 customers; fastest round each, median beside; ratio = peer / keel`,
    ].join('\n'),
  );
  const keelProvider = new KeelFlagProvider({ list: async () => [{ definition: flag, version: 1 }] });
  const peerProvider = inMemoryPeer();
  await OpenFeature.setProviderAndWait('bench-keel', keelProvider);
  await OpenFeature.setProviderAndWait('bench-peer', peerProvider);
  const keelClient = OpenFeature.getClient('bench-keel');
  const peerClient = OpenFeature.getClient('bench-peer');
  await compare(
    'flag evaluation through an OpenFeature client',
    (context) => keelClient.getBooleanValue(flag.key, false, context),
    (context) => peerClient.getBooleanValue(flag.key, false, context),
  );
  const alone =
    (provider: Provider): Evaluate =>
    async (context) =>
      (await provider.resolveBooleanEvaluation(flag.key, false, context, console)).value;
  await compare('flag evaluation by the provider alone', alone(keelProvider), alone(peerProvider));
  await OpenFeature.close();
}
