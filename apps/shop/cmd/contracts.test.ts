import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runContracts } from './contracts.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A folder of published contracts outside the checkout, written from the code as it is. */
async function published(): Promise<{
  dir: string;
  run: (...argv: string[]) => Promise<[number, string[]]>;
}> {
  const dir = await mkdtemp(path.join(tmpdir(), 'keel-contracts-'));
  dirs.push(dir);
  const run = async (...argv: string[]): Promise<[number, string[]]> => {
    const lines: string[] = [];
    const code = await runContracts(argv, (line) => lines.push(line), dir);
    return [code, lines];
  };
  expect((await run('write'))[0]).toBe(0);
  return { dir, run };
}

type Json = Record<string, unknown>;

/** The object at `keys` inside `document`. */
function at(document: Json, ...keys: string[]): Json {
  return keys.reduce((node, key) => node[key] as Json, document);
}

/** Edits a committed contract as an earlier version of it would have read. */
async function edit(dir: string, file: string, change: (document: Json) => void): Promise<void> {
  const document = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as Json;
  change(document);
  await writeFile(path.join(dir, file), `${JSON.stringify(document, null, 2)}\n`);
}

describe('npm run contracts', () => {
  it('writes the contracts, and finds them current', async () => {
    const { run } = await published();
    expect(await run('check')).toEqual([0, ['the published contracts are current']]);
  });

  it('refuses to write a change that breaks consumers of a published message type, until told it is meant', async () => {
    const { dir, run } = await published();
    // As published, order.placed.v1's customerId was at most 10 characters: the code now allows any.
    await edit(dir, 'asyncapi.json', (document) => {
      at(
        document,
        'components',
        'messages',
        'order.placed.v1',
        'payload',
        'properties',
        'customerId',
      ).maxLength = 10;
    });
    const [checked, report] = await run('check');
    expect(checked).toBe(1);
    expect(report).toContain(
      'breaking: asyncapi.json: order.placed.v1 payload customerId: maxLength 10 dropped',
    );
    const [refused, lines] = await run('write');
    expect(refused).toBe(1);
    expect(lines[0]).toBe(
      'breaking: asyncapi.json: order.placed.v1 payload customerId: maxLength 10 dropped',
    );
    expect(lines.at(-1)).toMatch(/^nothing written/);
    expect(JSON.parse(await readFile(path.join(dir, 'asyncapi.json'), 'utf8'))).toHaveProperty(
      'components.messages.order\\.placed\\.v1.payload.properties.customerId.maxLength',
    );
    expect((await run('write', '--breaking'))[0]).toBe(0);
    expect(await run('check')).toEqual([0, ['the published contracts are current']]);
  });

  it('refuses an HTTP change that removes an operation or answers what the published response did not allow', async () => {
    const { dir, run } = await published();
    await edit(dir, 'openapi.json', (document) => {
      const item = at(document, 'paths', '/v1/orders/{id}');
      item.delete = item.get;
      at(document, 'components', 'schemas', 'Order', 'properties', 'status').enum = ['PENDING', 'CONFIRMED'];
    });
    const [refused, lines] = await run('write');
    expect(refused).toBe(1);
    expect(lines.filter((line) => line.startsWith('breaking:'))).toEqual([
      'breaking: openapi.json: POST /v1/orders 202: body status: may now be "ACCEPTED", "CANCELLED"',
      'breaking: openapi.json: GET /v1/orders/{id} 200: body status: may now be "ACCEPTED", "CANCELLED"',
      'breaking: openapi.json: DELETE /v1/orders/{id}: removed',
    ]);
  });

  it('lets a compatible change through: a request that accepts more, an answer that carries less', async () => {
    const { dir, run } = await published();
    // As published, a name was at most 50 characters and an order could also be LOST.
    await edit(dir, 'openapi.json', (document) => {
      const body = at(
        document,
        'paths',
        '/v1/signups',
        'post',
        'requestBody',
        'content',
        'application/json',
        'schema',
      );
      at(body, 'properties', 'name').maxLength = 50;
      const status = at(document, 'components', 'schemas', 'Order', 'properties', 'status');
      status.enum = [...(status.enum as string[]), 'LOST'];
    });
    const [code, lines] = await run('write');
    expect(lines).toEqual([
      `${path.join(dir, 'openapi.json')}: written`,
      `${path.join(dir, 'asyncapi.json')}: written`,
    ]);
    expect(code).toBe(0);
  });

  it('counts a strict request that no longer takes a field as a break: old clients still send it', async () => {
    const { dir, run } = await published();
    await edit(dir, 'openapi.json', (document) => {
      const body = at(
        document,
        'paths',
        '/v1/signups',
        'post',
        'requestBody',
        'content',
        'application/json',
        'schema',
      );
      at(body, 'properties').referrer = { type: 'string' };
    });
    expect((await run('write'))[1][0]).toBe(
      'breaking: openapi.json: POST /v1/signups: request body referrer: no longer accepted',
    );
  });

  it('says how to use it', async () => {
    const [code, lines] = await (await published()).run('publish');
    expect(code).toBe(2);
    expect(lines[0]).toMatch(/npm run contracts -- check/);
  });
});
