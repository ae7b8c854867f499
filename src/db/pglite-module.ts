import type * as Pglite from '@electric-sql/pglite';
import { KeelError } from '../errors/index.ts';

export type PgliteModule = typeof Pglite;

const packageName = '@electric-sql/pglite';
let loading: Promise<PgliteModule> | undefined;

/**
 * PGlite, loaded on first use. It is an optional peer dependency of keel's package (tens of MB,
 * WebAssembly): a service on a PostgreSQL server imports `keel/db` without it installed. A
 * missing package is a typed error that says what to install or to use instead.
 */
export function loadPglite(): Promise<PgliteModule> {
  loading ??= import('@electric-sql/pglite').catch((cause: unknown) => {
    loading = undefined;
    throw isMissingPackage(cause)
      ? new KeelError(
          'KEEL_DB_UNAVAILABLE',
          `PGlite, the embedded database, is not installed: npm install ${packageName}, or use a PostgreSQL server (KEEL_DB=pg, DATABASE_URL)`,
          { cause, details: { package: packageName } },
        )
      : cause;
  });
  return loading;
}

function isMissingPackage(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === 'ERR_MODULE_NOT_FOUND' && typeof message === 'string' && message.includes(packageName);
}
