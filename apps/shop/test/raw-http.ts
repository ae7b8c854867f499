import net from 'node:net';

/** One response as it came over a connection. */
export interface RawResponse {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The body as text; '' for none. */
  body: string;
}

/**
 * A client connection that writes bytes as given and keeps all it receives, for what `inject`
 * cannot send: bytes that are not HTTP, a request that never finishes, requests on a connection
 * still busy with another, requests to an app that is closing.
 */
export class RawConnection {
  readonly #socket: net.Socket;
  #received = '';
  /** Resolves once the connection has closed, whichever side closed it. */
  readonly closed: Promise<void>;

  /** Connects to `address`, `http://host:port`. */
  constructor(address: string) {
    const { hostname, port } = new URL(address);
    this.#socket = net.connect(Number(port), hostname);
    this.#socket.setEncoding('utf8');
    this.#socket.on('data', (chunk: string) => (this.#received += chunk));
    // A server that closes with bytes unread resets the connection: what it sent is kept.
    this.#socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.#socket.once('close', () => resolve()));
  }

  write(text: string): void {
    this.#socket.write(text);
  }

  /** What the connection has received so far, as text. */
  get received(): string {
    return this.#received;
  }

  /** The responses received so far, each framed by its Content-Length. */
  responses(): RawResponse[] {
    const parsed: RawResponse[] = [];
    let rest = this.#received;
    while (rest.length > 0) {
      const headEnd = rest.indexOf('\r\n\r\n');
      if (headEnd < 0) break;
      const [statusLine = '', ...lines] = rest.slice(0, headEnd).split('\r\n');
      const headers = Object.fromEntries(
        lines.map((line) => {
          const colon = line.indexOf(':');
          return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
        }),
      );
      const length = Number(headers['content-length'] ?? 0);
      const bodyBytes = Buffer.from(rest.slice(headEnd + 4), 'utf8').subarray(0, length);
      const body = bodyBytes.toString('utf8');
      parsed.push({ status: Number(statusLine.split(' ')[1]), headers, body });
      rest = rest.slice(headEnd + 4 + body.length);
    }
    return parsed;
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

/** A `GET` of `path` on a keep-alive connection. */
export const rawGet = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive\r\n\r\n`;
