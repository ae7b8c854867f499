// NATS JetStream: keel's NatsJetStreamBroker beside @nats-io/jetstream used directly.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { randomBytes } from 'node:crypto';
import { NatsJetStreamBroker } from '../../src/messaging/adapters/nats/index.ts';
import type { Envelope } from '../../src/messaging/envelope.ts';
import { keelSide } from './keel-side.ts';
import type { Pair, Side } from './pair.ts';

const servers = process.env.KEEL_NATS_URL ?? '127.0.0.1:4222';
const concurrency = 64;
const batch = 256;

export const natsPair: Pair = {
  id: 'nats',
  title: 'NATS JetStream',
  peer: '@nats-io/jetstream',
  settings: [
    `server ${servers}; one stream per destination, file storage, 1 replica, limits retention; Nats-Msg-Id = envelope id (duplicate window 2 min)`,
    'publish: every message of a chunk published at once, the chunk done when JetStream acknowledged each (PubAck)',
    `consume: a durable pull consumer, explicit acks; acks confirmed a batch at a time by a flush (PING/PONG) after them; keel: concurrency ${concurrency}, prefetch ${batch}; raw: consume() pulling ${batch} at a time, a flush after every ${concurrency} acks`,
    'both connections with noAsyncTraces: true (the client otherwise builds two Errors per request)',
  ],
  async open() {
    const prefix = `keelbench-${randomBytes(3).toString('hex')}`;
    const broker = new NatsJetStreamBroker({ servers, prefix, name: 'keel-bench' });
    const nc = await connect({ servers, name: 'raw-bench', noAsyncTraces: true });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const keel = keelSide(broker, { consumer: { concurrency, prefetch: batch }, what: 'keel nats consume' });
    const raw: Side = {
      publish: async (destination, messages, chunk) => {
        const stream = await rawStream(jsm, prefix, destination);
        for (let i = 0; i < messages.length; i += chunk) {
          await Promise.all(
            messages.slice(i, i + chunk).map((m) => {
              const h = rawHeaders(m);
              return js.publish(`${prefix}.${destination}`, JSON.stringify(m.payload), {
                headers: h,
                msgID: m.id,
                expect: { streamName: stream },
              });
            }),
          );
        }
      },
      consume: async (destination, count, span) => {
        const stream = `${prefix}_${destination}`;
        await jsm.consumers.add(stream, {
          durable_name: 'raw',
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: 30_000_000_000,
        });
        const consumer = await js.consumers.get(stream, 'raw');
        const messages = await consumer.consume({ max_messages: batch });
        let acked = 0;
        let unflushed = 0;
        for await (const m of messages) {
          span.first();
          handle(m);
          m.ack();
          unflushed++;
          if (unflushed === concurrency || acked + unflushed === count) {
            await nc.flush();
            acked += unflushed;
            unflushed = 0;
          }
          if (acked >= count) break;
        }
        span.done();
        messages.stop();
        if (acked < count) throw new Error(`raw nats consume: ${acked} of ${count}`);
      },
    };
    return {
      keel,
      raw,
      close: async () => {
        await broker.close();
        for await (const name of jsm.streams.names()) {
          if (name.startsWith(`${prefix}_`)) await jsm.streams.delete(name);
        }
        await nc.drain();
      },
    };
  },
};

function handle(m: JsMsg): void {
  // What keel does with every message, so both sides read it: headers and the JSON payload.
  JSON.parse(m.string());
  m.headers?.get('x-keel-id');
}

function rawHeaders(m: Envelope): ReturnType<typeof headers> {
  const h = headers();
  for (const [name, value] of Object.entries(m.headers)) h.set(name, value);
  h.set('x-keel-id', m.id);
  h.set('x-keel-type', m.type);
  if (m.key !== null) h.set('x-keel-key', m.key);
  h.set('x-keel-occurred-at', m.occurredAt);
  return h;
}

async function rawStream(
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  prefix: string,
  destination: string,
): Promise<string> {
  const name = `${prefix}_${destination}`;
  await jsm.streams.add({ name, subjects: [`${prefix}.${destination}`] });
  return name;
}
