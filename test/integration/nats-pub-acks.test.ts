// PubAckInbox against a real nats-server with JetStream: every message's PubAck comes back in
// the order given, a second copy of an id is reported a duplicate, a refusal fails only its own
// message, and a reply that never comes fails after the call's timeout (on a manual clock), or at
// once when the inbox is closed.
import { jetstreamManager, JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';
import {
  connect,
  InvalidArgumentError as NatsInvalidArgumentError,
  NoRespondersError,
  TimeoutError,
  type NatsConnection,
} from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope } from '../../src/messaging/index.ts';
import { encode } from '../../src/messaging/adapters/nats/codec.ts';
import { PubAckInbox, type JetStreamPublish } from '../../src/messaging/adapters/nats/pub-acks.ts';
import {
  deleteStreamsWithPrefix,
  natsUrl,
  requireNats,
  testPrefix,
} from '../../src/messaging/adapters/nats/test-support.ts';
import type { KeelError } from '../../src/errors/index.ts';
import { ManualClock, systemClock } from '../../src/time/index.ts';

const prefix = testPrefix();
const stream = `${prefix}_ACKS`;
const subject = `${prefix}.acks`;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  await requireNats();
  nc = await connect({ servers: natsUrl });
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [subject] });
});

afterAll(async () => {
  await deleteStreamsWithPrefix(prefix);
  await nc?.close();
});

function message(n: number, id?: string): JetStreamPublish {
  const envelope = createEnvelope({ type: 'test.acked.v1', key: `k-${n}`, payload: { n } });
  return { encoded: encode(envelope), msgID: id ?? envelope.id };
}

describe('PubAckInbox', () => {
  it("returns each message's PubAck in the order given, and a second copy of an id as a duplicate", async () => {
    const inbox = new PubAckInbox(nc, systemClock);
    try {
      const before = (await jsm.streams.info(stream)).state.last_seq;
      const messages = Array.from({ length: 300 }, (_, n) => message(n));
      const outcomes = await inbox.publishAll(subject, stream, messages, 5000);
      expect(outcomes.map((o) => o.ok && o.ack.seq)).toEqual(
        Array.from({ length: 300 }, (_, n) => before + n + 1),
      );
      expect(outcomes.every((o) => o.ok && o.ack.stream === stream && !o.ack.duplicate)).toBe(true);

      const [again] = await inbox.publishAll(subject, stream, [message(0, messages[0]!.msgID)], 5000);
      expect(again!.ok && again!.ack).toMatchObject({ duplicate: true, seq: before + 1 });
      expect(await inbox.publishAll(subject, stream, [], 5000)).toEqual([]);
    } finally {
      inbox.close();
    }
  });

  it('fails only the message the server refuses, with the reason', async () => {
    const inbox = new PubAckInbox(nc, systemClock);
    try {
      const large = message(2);
      const tooLarge = {
        ...large,
        encoded: { ...large.encoded, data: new Uint8Array(nc.info!.max_payload + 1) },
      };
      const outcomes = await inbox.publishAll(subject, stream, [message(1), tooLarge, message(3)], 5000);
      expect(outcomes.map((o) => o.ok)).toEqual([true, false, true]);
      expect(!outcomes[1]!.ok && outcomes[1]!.error).toBeInstanceOf(NatsInvalidArgumentError);

      // The stream is not the one expected: JetStream's API error, its code kept.
      const [wrongStream] = await inbox.publishAll(subject, `${stream}_OTHER`, [message(4)], 5000);
      expect(wrongStream!.ok).toBe(false);
      const refusal = !wrongStream!.ok ? wrongStream!.error : undefined;
      expect(refusal).toBeInstanceOf(JetStreamApiError);
      expect((refusal as JetStreamApiError).code).toBe(10060);

      // No stream holds the subject: the server answers "no responders" at once.
      const [nobody] = await inbox.publishAll(`${prefix}.nobody`, stream, [message(5)], 5000);
      expect(!nobody!.ok && nobody!.error).toBeInstanceOf(NoRespondersError);
    } finally {
      inbox.close();
    }
  });

  it('fails what got no reply once the timeout passes, and ignores a reply that comes later', async () => {
    const clock = new ManualClock();
    const inbox = new PubAckInbox(nc, clock);
    // A plain subscriber, not a stream: it takes the messages and answers the second late.
    const silent = `${prefix}.silent`;
    const held: { respond(data: string): boolean }[] = [];
    const listener = nc.subscribe(silent, {
      callback: (_error, msg) => {
        held.push(msg);
      },
    });
    try {
      await nc.flush();
      const outcomes = inbox.publishAll(silent, stream, [message(1), message(2)], 5000);
      const until = async (n: number): Promise<void> => {
        while (held.length < n) await new Promise((resolve) => setImmediate(resolve));
      };
      await until(2);
      held[0]!.respond(JSON.stringify({ stream, seq: 7 }));
      // The reply went through the server and back before the PONG of this flush.
      await nc.flush();
      await clock.advance(5000);
      const [first, second] = await outcomes;
      expect(first).toEqual({ ok: true, ack: { stream, seq: 7, duplicate: false } });
      expect(!second!.ok && second!.error).toBeInstanceOf(TimeoutError);
      // Too late: nothing waits for it any more, and nothing breaks.
      held[1]!.respond(JSON.stringify({ stream, seq: 8 }));
      await nc.flush();
    } finally {
      listener.unsubscribe();
      inbox.close();
    }
  });

  it('fails what still waits for a reply at once when it is closed', async () => {
    const clock = new ManualClock();
    const inbox = new PubAckInbox(nc, clock);
    const silent = `${prefix}.closed`;
    let taken = 0;
    const listener = nc.subscribe(silent, {
      callback: () => {
        taken++;
      },
    });
    try {
      await nc.flush();
      const outcomes = inbox.publishAll(silent, stream, [message(1), message(2)], 5000);
      while (taken < 2) await new Promise((resolve) => setImmediate(resolve));
      inbox.close();
      // No clock advanced: the close answered them.
      const settled = await outcomes;
      expect(settled.map((o) => !o.ok && (o.error as KeelError).code)).toEqual([
        'KEEL_SERVICE_STATE',
        'KEEL_SERVICE_STATE',
      ]);
      expect(clock.pendingTimers).toBe(0);
    } finally {
      listener.unsubscribe();
    }
  });
});
