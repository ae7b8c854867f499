/**
 * Asks a Kafka broker for its cluster metadata and exits 0 once it answers with at least one
 * broker: the readiness check of scripts/kafka/start.sh. An open port is not enough, since a
 * KRaft broker accepts connections before it has joined its quorum and been unfenced.
 *
 * Speaks the wire protocol directly (a Metadata v1 request, supported by every Kafka since 0.10
 * and still by 4.x) so the check needs no Kafka client package and starts no JVM.
 *
 *   node --import tsx scripts/kafka/metadata-probe.ts [host:port] [timeoutMs]
 */
import { connect } from 'node:net';

const metadataApiKey = 3;
const metadataVersion = 1;
const clientId = 'keel-kafka-probe';

interface BrokerInfo {
  nodeId: number;
  host: string;
  port: number;
}

function metadataRequest(correlationId: number): Buffer {
  const client = Buffer.from(clientId, 'utf8');
  // Header v1 (api key, version, correlation id, client id) then the body: an empty topic
  // array, which asks for the broker list without any topic.
  const body = Buffer.alloc(2 + 2 + 4 + 2 + client.length + 4);
  let at = 0;
  at = body.writeInt16BE(metadataApiKey, at);
  at = body.writeInt16BE(metadataVersion, at);
  at = body.writeInt32BE(correlationId, at);
  at = body.writeInt16BE(client.length, at);
  at += client.copy(body, at);
  body.writeInt32BE(0, at);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return Buffer.concat([size, body]);
}

function parseBrokers(response: Buffer, correlationId: number): BrokerInfo[] {
  let at = 0;
  const int16 = (): number => {
    const value = response.readInt16BE(at);
    at += 2;
    return value;
  };
  const int32 = (): number => {
    const value = response.readInt32BE(at);
    at += 4;
    return value;
  };
  const string = (): string | null => {
    const length = int16();
    if (length < 0) return null;
    const value = response.toString('utf8', at, at + length);
    at += length;
    return value;
  };
  const got = int32();
  if (got !== correlationId) throw new Error(`correlation id ${got}, expected ${correlationId}`);
  const count = int32();
  const brokers: BrokerInfo[] = [];
  for (let i = 0; i < count; i++) {
    const nodeId = int32();
    const host = string() ?? '';
    const port = int32();
    string(); // rack
    brokers.push({ nodeId, host, port });
  }
  return brokers;
}

function probe(host: string, port: number, timeoutMs: number): Promise<BrokerInfo[]> {
  return new Promise((resolve, reject) => {
    const correlationId = 1;
    const socket = connect({ host, port });
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no metadata answer from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (error: Error | undefined, brokers?: BrokerInfo[]): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(brokers ?? []);
    };
    socket.on('connect', () => socket.write(metadataRequest(correlationId)));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 4) return;
      const size = received.readInt32BE(0);
      if (received.length < 4 + size) return;
      try {
        finish(undefined, parseBrokers(received.subarray(4, 4 + size), correlationId));
      } catch (error) {
        finish(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error(`${host}:${port} closed the connection before answering`)));
  });
}

const [address = '127.0.0.1:9092', timeoutArg = '3000'] = process.argv.slice(2);
const separator = address.lastIndexOf(':');
const host = address.slice(0, separator);
const port = Number(address.slice(separator + 1));
try {
  const brokers = await probe(host, port, Number(timeoutArg));
  if (brokers.length === 0) {
    console.error(`${address} answered with no brokers yet`);
    process.exitCode = 1;
  } else {
    console.log(`ready: ${brokers.map((b) => `${b.nodeId}@${b.host}:${b.port}`).join(', ')}`);
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
}
