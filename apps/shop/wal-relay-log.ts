import type { Logger } from 'pino';
import type { WalOutboxRelay } from '../../src/outbox/index.ts';

/**
 * What the shop logs of its WAL relay: its errors, the messages it parks, and how a stop's wait
 * for the server to let the slot go ended. A slot let go is routine (debug); one still held at
 * the bound means a relay started now may stand by a turn, and one the server could not be asked
 * about may be held as long, so both are warnings an operator who sees a standby can match.
 */
export function logWalRelayEvents(events: Pick<WalOutboxRelay['events'], 'on'>, logger: Logger): void {
  events.on('error', ({ error, during }) => logger.warn({ err: error, during }, 'WAL relay error'));
  events.on('parked', ({ message, error }) =>
    logger.error({ err: error, messageId: message.id }, 'WAL relay parked a message (keel outbox retry)'),
  );
  events.on('slot-release', ({ slotName, outcome, waitedMs, error }) => {
    if (outcome === 'released') {
      logger.debug({ slotName, outcome, waitedMs }, 'WAL relay stopped: the server let its slot go');
    } else if (outcome === 'timed-out') {
      logger.warn(
        { slotName, outcome, waitedMs },
        'WAL relay stopped with its slot still held: a relay started now may stand by a turn',
      );
    } else {
      // `err` carries the error's code (KEEL_DB_UNAVAILABLE, a SQLSTATE…) and message.
      logger.warn(
        { err: error, slotName, outcome, waitedMs },
        'WAL relay stopped without knowing whether its slot was let go: the server could not be asked',
      );
    }
  });
}
