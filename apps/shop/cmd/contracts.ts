// The shop's published contracts, from a shell: `npm run contracts -- check | write`.
// apps/shop/contracts/openapi.json (the HTTP API) and asyncapi.json (its messages) are what
// clients and consumers build against; the code's zod schemas are where they come from. `check`
// fails while they differ; `write` publishes a deliberate change.
import { staleContracts, writePublishedContracts } from '../contracts/published-contract.ts';

const usage = `npm run contracts -- check    exit 1 if apps/shop/contracts/openapi.json or asyncapi.json differs from the code
npm run contracts -- write    rewrite them from the code (after a deliberate change to the API or a message)`;

export async function runContracts(argv: readonly string[], out: (line: string) => void): Promise<number> {
  const [command] = argv;
  switch (command) {
    case 'check': {
      const stale = await staleContracts();
      for (const file of stale) {
        out(
          `${file}: differs from the code's contract; review the change, then run npm run contracts -- write`,
        );
      }
      if (stale.length === 0) out('the published contracts are current');
      return stale.length === 0 ? 0 : 1;
    }
    case 'write':
      for (const file of await writePublishedContracts()) out(`${file}: written`);
      return 0;
    default:
      out(usage);
      return command === undefined || command === '--help' ? 0 : 2;
  }
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await runContracts(process.argv.slice(2), (line) => console.log(line));
}
