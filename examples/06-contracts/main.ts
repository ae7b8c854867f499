// Contract-first, with the schemas you already have: the zod schemas a fastify route parses with
// become its OpenAPI 3.1 document; a test holds the running app to it; and a later version of the
// contract is checked against the published one, so a change that would break clients is caught
// before it ships. The same for messages: a payload widened under the same `name.v1` breaks its
// consumers, a `name.v2` beside it does not.
//
//   npx tsx examples/06-contracts/main.ts
import Fastify, { type FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  asyncApiBreaks,
  asyncApiDocument,
  openApiBreaks,
  openApiDocument,
  problemContentType,
  problemDetailsSchema,
  type HttpOperation,
} from 'keel/contracts';
import { KeelError, NotFoundError, toProblemDetails } from 'keel/errors';
import { defineMessage } from 'keel/messaging';
import { openApiResponses } from 'keel/testing';

const bookParams = z.strictObject({ id: z.string().regex(/^b-\d+$/) });
const book = z.object({ id: z.string(), title: z.string(), format: z.enum(['paperback', 'hardback']) });

const getBook: HttpOperation = {
  method: 'get',
  path: '/books/:id',
  operationId: 'getBook',
  summary: 'Read a book',
  params: bookParams,
  responses: {
    200: { description: 'The book', body: book },
    400: { description: 'Not a book id', contentType: problemContentType, body: problemDetailsSchema },
    404: { description: 'No such book', contentType: problemContentType, body: problemDetailsSchema },
  },
};

const books = new Map([['b-1', { id: 'b-1', title: 'Distributed Systems', format: 'paperback' }]]);

/** The app: its route parses with the same schema the contract is written from. */
function app(): FastifyInstance {
  const http = Fastify();
  // Every error leaves as problem+json, as the contract's 400 and 404 say.
  http.setErrorHandler((error, request, reply) => {
    const problem = toProblemDetails(error, request.url);
    return reply.status(problem.status).type(problemContentType).send(problem);
  });
  http.get('/books/:id', async (request) => {
    const parsed = bookParams.safeParse(request.params);
    if (!parsed.success) throw new KeelError('KEEL_VALIDATION_FAILED', 'id: expected b-<digits>');
    const found = books.get(parsed.data.id);
    if (found === undefined) throw new NotFoundError('book', parsed.data.id);
    return found;
  });
  return http;
}

export async function runExample(log: (line: string) => void): Promise<void> {
  const published = openApiDocument({ info: { title: 'books', version: '1.0.0' }, operations: [getBook] });
  log(`published ${Object.keys(published.paths).join(', ')} (OpenAPI ${published.openapi})`);

  // The app answers as its contract says: each response checked against the document.
  const http = app();
  const { check } = openApiResponses(published);
  for (const url of ['/books/b-1', '/books/b-2', '/books/nope']) {
    const response = await http.inject({ url });
    const problems = check({
      method: 'GET',
      url,
      status: response.statusCode,
      headers: response.headers,
      body: response.body,
    });
    log(
      `GET ${url} ${response.statusCode}: ${problems.length === 0 ? 'as documented' : problems.join('; ')}`,
    );
  }
  await http.close();

  // Version 1.1 adds an ebook format: old clients validating the enum would refuse it.
  const next = openApiDocument({
    info: { title: 'books', version: '1.1.0' },
    operations: [
      {
        ...getBook,
        responses: {
          ...getBook.responses,
          200: {
            description: 'The book',
            body: book.extend({ format: z.enum(['paperback', 'hardback', 'ebook']) }),
          },
        },
      },
    ],
  });
  log(`1.0 → 1.1 breaks: ${openApiBreaks(published, next).join('; ') || 'nothing'}`);

  // Messages: widening book.added.v1 breaks its consumers; book.added.v2 beside it does not.
  const addedV1 = defineMessage('book.added', 1, z.object({ id: z.string(), title: z.string().max(200) }));
  const widened = defineMessage('book.added', 1, z.object({ id: z.string(), title: z.string() }));
  const addedV2 = defineMessage(
    'book.added',
    2,
    z.object({ id: z.string(), title: z.string(), isbn: z.string() }),
  );
  const channel = (messages: Parameters<typeof asyncApiDocument>[0]['channels'][string]['messages']) =>
    asyncApiDocument({
      info: { title: 'book events', version: '1.0.0' },
      channels: {
        books: { address: 'books', description: 'catalogue changes', messages, actions: ['send'] },
      },
    });
  log(
    `book.added.v1 widened breaks: ${asyncApiBreaks(channel([addedV1]), channel([widened])).join('; ') || 'nothing'}`,
  );
  log(
    `book.added.v2 beside v1 breaks: ${asyncApiBreaks(channel([addedV1]), channel([addedV1, addedV2])).join('; ') || 'nothing'}`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExample((line) => console.log(line));
}
