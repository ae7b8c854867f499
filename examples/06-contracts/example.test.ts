import { expect, it } from 'vitest';
import { runExample } from './main.ts';

it('examples/06-contracts: the app answers as its contract says; a widened enum or payload is a break, a new message version is not', async () => {
  const lines: string[] = [];
  await runExample((line) => lines.push(line));
  expect(lines).toEqual([
    'published /books/{id} (OpenAPI 3.1.0)',
    'GET /books/b-1 200: as documented',
    'GET /books/b-2 404: as documented',
    'GET /books/nope 400: as documented',
    '1.0 → 1.1 breaks: GET /books/{id} 200: body format: may now be "ebook"',
    'book.added.v1 widened breaks: book.added.v1 payload title: maxLength 200 dropped',
    'book.added.v2 beside v1 breaks: nothing',
  ]);
});
