import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { asyncApiBreaks, openApiBreaks } from '../../../src/contracts/index.ts';
import { shopOpenApiDocument } from './http-api.ts';
import { shopAsyncApiDocument } from './message-api.ts';

/** Where the shop's contracts are committed. */
export const contractsDir = fileURLToPath(new URL('.', import.meta.url));

/** A contract the shop publishes: its file, the document the code describes, and what breaks between two versions. */
interface PublishedContract {
  file: string;
  document: () => object;
  breaks: (previous: never, next: never) => string[];
}

/** The shop's HTTP API (OpenAPI 3.1) and its messages (AsyncAPI 3.0). */
const publishedContracts: readonly PublishedContract[] = [
  {
    file: 'openapi.json',
    document: shopOpenApiDocument,
    breaks: openApiBreaks,
  },
  {
    file: 'asyncapi.json',
    document: shopAsyncApiDocument,
    breaks: asyncApiBreaks,
  },
];

/** As committed: two-space JSON and a final newline, so diffs read line by line. */
function contractText(contract: PublishedContract): string {
  return `${JSON.stringify(contract.document(), null, 2)}\n`;
}

async function committedText(dir: string, contract: PublishedContract): Promise<string | undefined> {
  return readFile(path.join(dir, contract.file), 'utf8').catch(() => undefined);
}

/** The files of the contracts whose committed text is not what the code describes now. */
export async function staleContracts(dir = contractsDir): Promise<string[]> {
  const stale: string[] = [];
  for (const contract of publishedContracts) {
    if ((await committedText(dir, contract)) !== contractText(contract))
      stale.push(path.join(dir, contract.file));
  }
  return stale;
}

/** What the code's contracts break for clients and consumers of the committed ones (none for a file not yet published). */
export async function contractBreaks(dir = contractsDir): Promise<string[]> {
  const breaks: string[] = [];
  for (const contract of publishedContracts) {
    const committed = await committedText(dir, contract);
    if (committed === undefined) continue;
    const lines = contract.breaks(JSON.parse(committed) as never, contract.document() as never);
    breaks.push(...lines.map((line) => `${contract.file}: ${line}`));
  }
  return breaks;
}

/**
 * Rewrites the contracts' files from the code — unless that breaks what was published and
 * `breaking` does not say so is meant: then nothing is written and the breaks are returned.
 */
export async function writePublishedContracts(
  dir = contractsDir,
  { breaking = false }: { breaking?: boolean } = {},
): Promise<{ written: string[]; breaks: string[] }> {
  const breaks = await contractBreaks(dir);
  if (breaks.length > 0 && !breaking) return { written: [], breaks };
  const written: string[] = [];
  for (const contract of publishedContracts) {
    const file = path.join(dir, contract.file);
    await writeFile(file, contractText(contract));
    written.push(file);
  }
  return { written, breaks };
}
