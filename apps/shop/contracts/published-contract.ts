import { readFile, writeFile } from 'node:fs/promises';
import { shopOpenApiDocument } from './http-api.ts';

/** Where the shop's published HTTP contract is committed. */
export const publishedContractPath = new URL('./openapi.json', import.meta.url);

/** The document as it is committed: two-space JSON and a final newline, so diffs read line by line. */
export function contractText(): string {
  return `${JSON.stringify(shopOpenApiDocument(), null, 2)}\n`;
}

/** Whether the committed contract is what the code describes now. */
export async function publishedContractIsCurrent(): Promise<boolean> {
  const committed = await readFile(publishedContractPath, 'utf8').catch(() => '');
  return committed === contractText();
}

export async function writePublishedContract(): Promise<void> {
  await writeFile(publishedContractPath, contractText());
}
