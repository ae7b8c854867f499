// The shop's published contracts, from a shell: `npm run contracts -- check | write [--breaking]`.
// apps/shop/contracts/openapi.json (the HTTP API) and asyncapi.json (its messages) are what
// clients and consumers build against; the code's zod schemas are where they come from. `check`
// fails while they differ; `write` publishes a deliberate change, and refuses one that breaks
// what was published (an operation or a message type removed, a payload or response that may
// now carry what the old schema refused, a request that accepts less) unless given --breaking.
import { contractBreaks, staleContracts, writePublishedContracts } from '../contracts/published-contract.ts';

const usage = `npm run contracts -- check               exit 1 if openapi.json or asyncapi.json differs from the code; list what would break
npm run contracts -- write               rewrite them from the code, unless that breaks what they published
npm run contracts -- write --breaking    rewrite them even so: a new major version, or no client yet`;

export async function runContracts(
  argv: readonly string[],
  out: (line: string) => void,
  dir?: string,
): Promise<number> {
  const [command, flag] = argv;
  switch (command) {
    case 'check': {
      const stale = await staleContracts(dir);
      for (const file of stale) {
        out(
          `${file}: differs from the code's contract; review the change, then run npm run contracts -- write`,
        );
      }
      for (const line of await contractBreaks(dir)) out(`breaking: ${line}`);
      if (stale.length === 0) out('the published contracts are current');
      return stale.length === 0 ? 0 : 1;
    }
    case 'write': {
      if (flag !== undefined && flag !== '--breaking') break;
      const { written, breaks } = await writePublishedContracts(dir, { breaking: flag === '--breaking' });
      for (const line of breaks) out(`breaking: ${line}`);
      if (written.length === 0) {
        out(
          'nothing written: the change breaks clients or consumers of the published contracts. Make it compatible (a new message version, an optional field), or run npm run contracts -- write --breaking if that is meant.',
        );
        return 1;
      }
      for (const file of written) out(`${file}: written`);
      return 0;
    }
  }
  out(usage);
  return command === undefined || command === '--help' ? 0 : 2;
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await runContracts(process.argv.slice(2), (line) => console.log(line));
}
