import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { DbConfig } from '../../../src/db/index.ts';
import type { DailySalesConfig } from '../analytics/daily-sales.ts';
import type { ShopOutbox } from '../app.ts';
import type { MailConfig } from '../notifications/mail-config.ts';
import type { BrokerConfig } from '../presets/broker-config.ts';

/** What a newcomer sees after `npm start`: where it listens, one command to try, where data lives, how to stop. */
export function firstScreen(
  address: string,
  db: DbConfig,
  roles: Iterable<string>,
  outbox: ShopOutbox = { kind: 'table' },
  parts: { mail?: MailConfig; broker?: BrokerConfig; dailySales?: DailySalesConfig } = {},
): string {
  const inMemory = db.kind === 'pglite' && (db.dataDir === undefined || db.dataDir === 'memory://');
  const where =
    db.kind === 'pglite'
      ? db.dataDir === undefined || db.dataDir === 'memory://'
        ? 'in memory (gone when the process stops)'
        : `${path.resolve(db.dataDir)} (embedded PostgreSQL: PGlite; delete the folder to start afresh)`
      : `${redact(db.url)}${db.schema ? ` (schema ${db.schema})` : ''}`;
  const roleList = [...roles];
  const curl = `curl -i -X POST ${address}/v1/orders -H 'content-type: application/json' -H 'idempotency-key: ${randomUUID()}' -d '{"customerId":"c-1","items":[{"sku":"book-1","quantity":2}]}'`;
  return [
    '',
    `  keel shop is running — ${roleList.join(' + ')}`,
    '',
    `  API        ${address}   contract: ${address}/openapi.json (OpenAPI 3.1)`,
    `  health     ${address}/healthz   ready: ${address}/readyz`,
    `  metrics    ${address}/metrics (Prometheus); traces to OTEL_EXPORTER_OTLP_ENDPOINT when set`,
    // The page is served by the api role only.
    ...(roleList.includes('api')
      ? [
          `  dashboard  ${address}/dashboard (processes, queues, outbox, sagas, breakers, schedules and latency, live)`,
          `  analytics  ${address}/v1/analytics/orders (a read model replayed from the order stream)`,
        ]
      : []),
    `  data       ${where}`,
    `  outbox     ${
      outbox.kind === 'wal'
        ? 'WAL: events as logical messages, streamed from the slot keel_outbox (KEEL_OUTBOX=wal)'
        : db.kind === 'pg'
          ? 'table keel_outbox (KEEL_OUTBOX=wal streams events from the WAL instead: wal_level=logical)'
          : 'table keel_outbox'
    }`,
    `  queues     ${queues(parts.broker)}`,
    ...(parts.mail === undefined ? [] : [`  mail       ${mail(parts.mail)}`]),
    ...(parts.dailySales === undefined
      ? []
      : [
          `  schedules  shop.daily-sales closes each day on '${parts.dailySales.cron}' ${parts.dailySales.timeZone} (KEEL_DAILY_SALES; npm run analytics -- daily)`,
        ]),
    '',
    '  Place an order, then GET the Location it returns: within a second it is CONFIRMED (stock',
    '  reserved, payment taken), or CANCELLED with a reason (sku rare-1 has one unit; a customerId',
    '  starting with declined- has its payment declined, and the reserved stock goes back).',
    '  Run it twice: the same Idempotency-Key replays the first answer and places no second order.',
    '',
    `    ${curl}`,
    '',
    '  Sign up (POST /v1/signups) and the welcome mail arrives where "mail" says:',
    '',
    `    curl -i -X POST ${address}/v1/signups -H 'content-type: application/json' -d '{"email":"ada@example.com","name":"Ada"}'`,
    '',
    `  Stop: Ctrl-C (drains in-flight work, then exits 0).${inMemory ? '' : ' Data survives a restart.'}`,
    '',
  ].join('\n');
}

function queues(broker: BrokerConfig | undefined): string {
  if (broker === undefined || broker.kind === 'postgres')
    return "keel's queue in the database (KEEL_BROKER=rabbitmq, kafka, nats or redis for a broker)";
  return `${broker.kind} at ${redact(broker.url)}${broker.prefix ? `, names under ${broker.prefix}` : ''}`;
}

function mail(config: MailConfig): string {
  return config.kind === 'smtp'
    ? `SMTP ${redact(config.url)}`
    : `${path.resolve(config.dir)} (one .eml file a mail; KEEL_SMTP_URL sends to a server)`;
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}
