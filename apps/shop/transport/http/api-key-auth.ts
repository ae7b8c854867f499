import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Db } from '../../../../src/db/index.ts';
import { KeelError } from '../../../../src/errors/index.ts';
import type { Clock } from '../../../../src/time/index.ts';
import { findLiveApiKey } from '../../storage/api-keys-store.ts';

/** Keys remembered, valid or not, before the memory is cleared: bounds what random keys can cost. */
const maxRemembered = 10_000;

const clients = new WeakMap<FastifyRequest, string>();

/** The client an API key authenticated for this request (`key:<id>`), if any. */
export function authenticatedClient(request: FastifyRequest): string | undefined {
  return clients.get(request);
}

function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers['x-api-key'];
  if (typeof header === 'string' && header !== '') return header;
  const authorization = request.headers.authorization;
  return authorization?.startsWith('Bearer ') ? authorization.slice('Bearer '.length).trim() : undefined;
}

/**
 * Every request to `/v1/…` must carry a live API key, as `Authorization: Bearer <key>` or
 * `X-Api-Key`; without one it gets 401 `KEEL_UNAUTHENTICATED`. A key's answer is remembered for
 * `cacheMs` (30 s by default): a request costs no query, and a revoked key stops working within
 * that time.
 */
export function installApiKeyAuth(
  app: FastifyInstance,
  options: { db: Db; clock: Clock; cacheMs?: number },
): void {
  const { db, clock } = options;
  const cacheMs = options.cacheMs ?? 30_000;
  const remembered = new Map<string, { client: string | undefined; until: number }>();

  async function clientFor(key: string): Promise<string | undefined> {
    const now = clock.now();
    const known = remembered.get(key);
    if (known !== undefined && known.until > now) return known.client;
    const found = await findLiveApiKey(db, key);
    if (remembered.size >= maxRemembered) remembered.clear();
    const client = found === undefined ? undefined : `key:${found.id}`;
    remembered.set(key, { client, until: now + cacheMs });
    return client;
  }

  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/v1/')) return;
    const key = presentedKey(request);
    const client = key === undefined ? undefined : await clientFor(key);
    if (client === undefined) {
      void reply.header('www-authenticate', 'Bearer realm="shop"');
      throw new KeelError(
        'KEEL_UNAUTHENTICATED',
        key === undefined
          ? 'an API key is required: Authorization: Bearer <key>, or X-Api-Key'
          : 'the API key is not known, or was revoked',
      );
    }
    clients.set(request, client);
  });
}
