import { Command, type Redis } from 'ioredis';

/**
 * Sends one command at once, outside the client's auto-pipelining (`enableAutoPipelining`, on
 * for the client the broker opens), which would hold it for a turn of the event loop and wrap it
 * in a pipeline of its own. For the consumer's hot path, whose commands are batches already: a
 * claim's read, an ack. Keys are prefixed as the client's own commands are (`keyPrefix`).
 */
export function sendNow(client: Redis, name: string, args: readonly (string | number)[]): Promise<unknown> {
  const command = new Command(name, args as (string | number)[], {
    replyEncoding: 'utf8',
    keyPrefix: client.options.keyPrefix,
  });
  // The command's own promise, whatever the connection's state (queued while it reconnects).
  client.sendCommand(command);
  return command.promise;
}
