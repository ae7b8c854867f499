// The benchmark dispatcher: `npm run bench -- <name>` runs bench/<name>.ts, whose default
// export does the work. With no name, it lists what there is.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const available = readdirSync(here)
  .filter((file) => file.endsWith('.ts') && file !== 'run.ts' && !file.endsWith('.test.ts'))
  .map((file) => file.slice(0, -'.ts'.length))
  .sort();

const name = process.argv[2];
if (name === undefined || !available.includes(name)) {
  if (name !== undefined) console.error(`bench: no benchmark named "${name}"`);
  console.log(`usage: npm run bench -- <name>\navailable: ${available.join(', ')}`);
  process.exit(name === undefined ? 0 : 1);
}

const module = (await import(new URL(`./${name}.ts`, import.meta.url).href)) as {
  default: () => Promise<void>;
};
await module.default();
