import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import specs from '@asyncapi/specs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgQueue, type MessageType } from '../../../src/messaging/index.ts';
import { systemClock } from '../../../src/time/index.ts';
import type { Shop } from '../app.ts';
import { orderFulfilment } from '../application/fulfilment.ts';
import { PaymentProvider } from '../application/payment-provider.ts';
import { until } from '../../../test/until.ts';
import { PublishLog } from '../test/publish-log.ts';
import { createShopStore, fulfilmentFinished, openTestShop, type ShopStore } from '../test/test-shop.ts';
import { shopAsyncApiDocument } from './message-api.ts';

// The shop's messages are held to their published contract (apps/shop/contracts/asyncapi.json):
// it is valid AsyncAPI 3.0, it names every message type the shop defines, and what a run of the
// shop actually published — a signup, an order confirmed and one cancelled — went only where the
// document says each type goes, with payloads its schemas accept, and every channel carried each
// type it documents.

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;
const document = shopAsyncApiDocument();
const channels = document.channels as Record<string, { address: string; messages: Record<string, unknown> }>;
const messages = document.components.messages as Record<string, { payload: object }>;

let store: ShopStore;
let shop: Shop;
const publishes = new PublishLog();
beforeAll(async () => {
  store = await createShopStore();
  // The shop's default broker, keel's PostgreSQL queue, with every publish noted.
  shop = await openTestShop(store, ['api', 'worker', 'relay'], systemClock, {
    broker: (db) => publishes.wrap(new PgQueue(db, { clock: systemClock })),
  });
  await shop.start();
});
afterAll(async () => {
  await shop.stop({ drainMs: 1000 });
  await store.dispose();
});

describe('the published message contract (apps/shop/contracts/asyncapi.json)', () => {
  it('is a valid AsyncAPI 3.0 document', () => {
    // The specification's schema carries its own copy of the draft-07 meta-schema.
    const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
    addFormats(ajv);
    const validate = ajv.compile(specs.schemas['3.0.0'] as object);
    expect(validate(document) ? [] : validate.errors).toEqual([]);
    expect(validate({ ...document, channels: { orders: { address: 5 } } })).toBe(false);
  });

  it('names every message type the shop defines', async () => {
    const here = fileURLToPath(new URL('.', import.meta.url));
    const defined: string[] = [];
    for (const file of await readdir(here)) {
      if (!file.endsWith('.ts') || file.endsWith('.test.ts')) continue;
      const module = (await import(`./${file}`)) as Record<string, unknown>;
      for (const value of Object.values(module)) if (isMessageType(value)) defined.push(value.type);
    }
    expect(defined.length).toBeGreaterThan(0);
    expect(Object.keys(messages).sort()).toEqual([...new Set(defined)].sort());
  });

  it('is what a run of the shop publishes: each type only where documented, each payload as its schema says, each channel with each of its types', async () => {
    const email = `${randomUUID()}@shop.test`;
    const signup = await shop.http.inject({
      method: 'POST',
      url: '/v1/signups',
      payload: { email, name: 'Ada' },
    });
    const customerId = signup.json<{ id: string }>().id;
    const ids: string[] = [];
    for (const customer of [customerId, `declined-${randomUUID()}`]) {
      const placed = await shop.http.inject({
        method: 'POST',
        url: '/v1/orders',
        payload: { customerId: customer, items: [{ sku: 'book-1', quantity: 1 }] },
        headers: { 'idempotency-key': randomUUID() },
      });
      ids.push(placed.json<{ id: string }>().id);
    }
    for (const id of ids) await fulfilmentFinished(shop, id);
    // The outcomes were written with the orders' last moves; the relay publishes them soon after.
    await until(
      async () =>
        (await shop.db.query(`SELECT 1 FROM keel_outbox WHERE published_at IS NULL`)).rows.length === 0,
      15_000,
      'the outbox published',
    );

    // Where each message went: the destination a context wrote it to the outbox for (its archive
    // keeps every published row, whatever the destination: a saga's command would be among them),
    // where the relay then published it on the broker, and what the order stream holds.
    const { rows } = await shop.db.query<{ destination: string; type: string; payload: unknown }>(
      `SELECT destination, type, payload FROM keel_outbox_archive
       UNION ALL SELECT stream, type, payload FROM keel_stream`,
    );
    for (const { destination, message } of publishes.published) {
      rows.push({ destination, type: message.type, payload: message.payload });
    }
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    const validators = new Map<string, ValidateFunction>();
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const row of rows) {
      const channel = Object.values(channels).find((c) => c.address === row.destination);
      if (channel === undefined || !(row.type in channel.messages)) {
        problems.push(`${row.type} on ${row.destination}: not documented there`);
        continue;
      }
      seen.add(`${row.destination} ${row.type}`);
      let validate = validators.get(row.type);
      if (validate === undefined) {
        validate = ajv.compile(messages[row.type]!.payload);
        validators.set(row.type, validate);
      }
      if (!validate(row.payload)) problems.push(`${row.type}: ${ajv.errorsText(validate.errors)}`);
    }
    expect(problems).toEqual([]);
    const documented = Object.values(channels).flatMap((channel) =>
      Object.keys(channel.messages).map((type) => `${channel.address} ${type}`),
    );
    expect([...seen].sort()).toEqual(documented.sort());
  });

  it('documents every destination the order-fulfilment saga sends commands to (none: its steps are calls)', () => {
    // keel's saga messages are a step's `request` (a command, and a reply event it waits for)
    // and a compensation's `command`, each to its `destination`; the shop's steps are calls the
    // worker makes itself. The run above checks what such a command would carry, here its address.
    const saga = orderFulfilment({
      db: shop.db,
      clock: systemClock,
      payments: new PaymentProvider(shop.db, { clock: systemClock }),
    });
    const commandDestinations = saga.steps.flatMap((step) => [
      ...(step.request === undefined ? [] : [step.request.destination]),
      ...(step.compensation === undefined || typeof step.compensation === 'function'
        ? []
        : [step.compensation.command.destination]),
    ]);
    const addresses = Object.values(channels).map((channel) => channel.address);
    expect(commandDestinations.filter((destination) => !addresses.includes(destination))).toEqual([]);
  });
});

function isMessageType(value: unknown): value is MessageType {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as MessageType).type === 'string' &&
    typeof (value as MessageType).version === 'number' &&
    typeof (value as MessageType).parse === 'function'
  );
}
