// The shop's published HTTP contract, from a shell: `npm run contracts -- check | write`.
// apps/shop/contracts/openapi.json is what clients build against; the code's zod schemas are
// where it comes from. `check` fails while the two differ; `write` publishes a deliberate change.
import { fileURLToPath } from 'node:url';
import {
  publishedContractIsCurrent,
  publishedContractPath,
  writePublishedContract,
} from '../contracts/published-contract.ts';

const usage = `npm run contracts -- check    exit 1 if apps/shop/contracts/openapi.json differs from the code's contract
npm run contracts -- write    rewrite it from the code (after a deliberate change to the API)`;

export async function runContracts(argv: readonly string[], out: (line: string) => void): Promise<number> {
  const [command] = argv;
  const file = fileURLToPath(publishedContractPath);
  switch (command) {
    case 'check':
      if (await publishedContractIsCurrent()) {
        out(`${file}: current`);
        return 0;
      }
      out(
        `${file}: differs from the code's contract; review the change, then run npm run contracts -- write`,
      );
      return 1;
    case 'write':
      await writePublishedContract();
      out(`${file}: written`);
      return 0;
    default:
      out(usage);
      return command === undefined || command === '--help' ? 0 : 2;
  }
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await runContracts(process.argv.slice(2), (line) => console.log(line));
}
