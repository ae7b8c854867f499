import type { FastifyInstance } from 'fastify';
import { shopOpenApiDocument } from '../../contracts/http-api.ts';

/** `GET /openapi.json`: the API's contract, for clients and their code generators. Open, like the probes. */
export async function contractRoutes(app: FastifyInstance): Promise<void> {
  const document = JSON.stringify(shopOpenApiDocument());
  app.get('/openapi.json', async (_request, reply) =>
    reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache').send(document),
  );
}
