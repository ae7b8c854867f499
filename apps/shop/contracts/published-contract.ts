import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { shopOpenApiDocument } from './http-api.ts';
import { shopAsyncApiDocument } from './message-api.ts';

/** A contract the shop publishes: the file it is committed in, and the document the code describes. */
interface PublishedContract {
  file: URL;
  document: () => unknown;
}

/** The shop's HTTP API (OpenAPI 3.1) and its messages (AsyncAPI 3.0). */
export const publishedContracts: readonly PublishedContract[] = [
  { file: new URL('./openapi.json', import.meta.url), document: shopOpenApiDocument },
  { file: new URL('./asyncapi.json', import.meta.url), document: shopAsyncApiDocument },
];

/** As committed: two-space JSON and a final newline, so diffs read line by line. */
function contractText(contract: PublishedContract): string {
  return `${JSON.stringify(contract.document(), null, 2)}\n`;
}

/** The files of the contracts whose committed text is not what the code describes now. */
export async function staleContracts(): Promise<string[]> {
  const stale: string[] = [];
  for (const contract of publishedContracts) {
    const committed = await readFile(contract.file, 'utf8').catch(() => '');
    if (committed !== contractText(contract)) stale.push(fileURLToPath(contract.file));
  }
  return stale;
}

/** Rewrites every contract's file from the code; returns the files. */
export async function writePublishedContracts(): Promise<string[]> {
  for (const contract of publishedContracts) await writeFile(contract.file, contractText(contract));
  return publishedContracts.map((contract) => fileURLToPath(contract.file));
}
