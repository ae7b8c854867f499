// What compiled JavaScript imports, read from its text: the build's and the package's tests
// check these against the manifests that must provide them.
import { readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';

export function jsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.js'))
    .map((name) => path.join(dir, name));
}

/** The package a bare specifier names: `pino`, `@nats-io/jetstream` (from `@nats-io/jetstream/lib/x`). */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** What a compiled file imports: relative files (resolved) and packages, node built-ins left out. */
export function importsOf(file: string): { files: string[]; packages: string[] } {
  const files: string[] = [];
  const packages: string[] = [];
  const source = readFileSync(file, 'utf8');
  for (const match of source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
    const specifier = match[1]!;
    if (specifier.startsWith('.')) files.push(path.resolve(path.dirname(file), specifier));
    else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier))
      packages.push(packageOf(specifier));
  }
  return { files, packages };
}

/** The packages imported by `entries` and every compiled file they reach. */
export function packagesReachedFrom(entries: string[]): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const pending = [...entries];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const found = importsOf(file);
    pending.push(...found.files);
    for (const name of found.packages) packages.add(name);
  }
  return packages;
}
