import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPglite } from '../db/pglite-module.ts';

/**
 * An initialised, empty PGlite data directory as a tarball. Starting from it takes ~0.5 s where
 * initdb takes 2 s or more; a test suite opens dozens of databases. Built once per machine and
 * PGlite version, cached in the OS temp directory, and in memory for the rest of the process.
 */
let cached: Promise<Blob> | undefined;

export function pgliteTemplate(): Promise<Blob> {
  cached ??= loadOrBuild();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

async function templatePath(): Promise<string> {
  const require = createRequire(import.meta.url);
  const packageJson = path.join(path.dirname(require.resolve('@electric-sql/pglite')), '..', 'package.json');
  const { version } = JSON.parse(await readFile(packageJson, 'utf8')) as { version: string };
  return path.join(tmpdir(), `keel-pglite-${version}-template.tar`);
}

async function loadOrBuild(): Promise<Blob> {
  const file = await templatePath();
  try {
    return new Blob([await readFile(file)]);
  } catch {
    // Not built yet on this machine.
  }
  const { PGlite } = await loadPglite();
  const pglite = await PGlite.create('memory://');
  let template: Blob;
  try {
    template = await pglite.dumpDataDir('none');
  } finally {
    await pglite.close();
  }
  // Written aside and renamed: concurrent test processes never read half a file.
  const partial = `${file}.${process.pid}.partial`;
  try {
    await writeFile(partial, new Uint8Array(await template.arrayBuffer()));
    await rename(partial, file);
  } catch {
    await rm(partial, { force: true });
  }
  return template;
}

/** Forgets a template that failed to load (a corrupt cache file), so the next call rebuilds it. */
export async function discardPgliteTemplate(): Promise<void> {
  cached = undefined;
  await rm(await templatePath(), { force: true });
}
