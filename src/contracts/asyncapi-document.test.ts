import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineMessage } from '../messaging/index.ts';
import { asyncApiDocument, type MessageChannelContract } from './index.ts';

const placed = defineMessage('order.placed', 1, z.object({ orderId: z.uuid(), total: z.number().int() }));
const placedV2 = defineMessage(
  'order.placed',
  2,
  z.object({ orderId: z.uuid(), totalCents: z.number().int() }),
);
const info = { title: 't', version: '1' };
const orders: MessageChannelContract = {
  address: 'shop.orders',
  description: 'work',
  messages: [placed, placedV2],
  actions: ['send', 'receive'],
};

describe('asyncApiDocument', () => {
  it('writes each channel with its message types, each type once with its payload schema and the envelope', () => {
    const document = asyncApiDocument({
      info,
      channels: {
        orders,
        stream: { ...orders, address: 'shop.stream', messages: [placed], actions: ['send'] },
      },
    });
    expect(document.asyncapi).toBe('3.0.0');
    expect(document.channels.orders).toEqual({
      address: 'shop.orders',
      description: 'work',
      messages: {
        'order.placed.v1': { $ref: '#/components/messages/order.placed.v1' },
        'order.placed.v2': { $ref: '#/components/messages/order.placed.v2' },
      },
    });
    expect(Object.keys(document.operations)).toEqual(['send-orders', 'receive-orders', 'send-stream']);
    expect(document.operations['send-stream']).toEqual({
      action: 'send',
      channel: { $ref: '#/channels/stream' },
      messages: [{ $ref: '#/channels/stream/messages/order.placed.v1' }],
    });
    expect(document.components.messages['order.placed.v2']).toEqual({
      name: 'order.placed.v2',
      title: 'order.placed, version 2',
      contentType: 'application/json',
      payload: {
        type: 'object',
        properties: {
          orderId: expect.objectContaining({ type: 'string', format: 'uuid' }) as unknown,
          totalCents: { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
        },
        required: ['orderId', 'totalCents'],
        additionalProperties: false,
      },
      traits: [{ $ref: '#/components/messageTraits/keelEnvelope' }],
    });
    expect(document.components.messageTraits).toHaveProperty('keelEnvelope.headers.properties.traceparent');
  });

  it('refuses a contract that contradicts itself, naming what is wrong', () => {
    const build = (channels: Record<string, MessageChannelContract>) => () =>
      asyncApiDocument({ info, channels });
    expect(build({ 'a b': orders })).toThrow(/channels/);
    expect(build({ a: orders, b: orders })).toThrow(/one channel per address/);
    expect(build({ a: { ...orders, messages: [] } })).toThrow(/channels\.a\.messages/);
    expect(build({ a: { ...orders, actions: [] } })).toThrow(/channels\.a\.actions/);
    const impostor = defineMessage('order.placed', 1, z.object({ other: z.string() }));
    expect(build({ a: orders, b: { ...orders, address: 'x', messages: [impostor] } })).toThrow(
      expect.objectContaining({
        code: 'KEEL_INVALID_ARGUMENT',
        message: expect.stringContaining('order.placed.v1') as unknown,
      }),
    );
  });
});
