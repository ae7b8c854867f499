import { describe, expect, it } from 'vitest';
import { firstScreen } from './first-screen.ts';

describe('the first screen', () => {
  it('says where the API listens, where data lives and which outbox carries the events', () => {
    const embedded = firstScreen('http://127.0.0.1:3000', { kind: 'pglite', dataDir: '.keel/pglite' }, [
      'api',
    ]);
    expect(embedded).toContain(
      'API        http://127.0.0.1:3000   contract: http://127.0.0.1:3000/openapi.json',
    );
    expect(embedded).toMatch(/data {7}\/.*\.keel\/pglite \(embedded PostgreSQL: PGlite/);
    expect(embedded).toContain('outbox     table keel_outbox\n');
    expect(embedded).toContain('Data survives a restart.');
    expect(embedded).toContain('dashboard  http://127.0.0.1:3000/dashboard (');
    expect(embedded).toContain('analytics  http://127.0.0.1:3000/v1/analytics/orders');
    expect(embedded).toContain("queues     keel's queue in the database");
    expect(embedded).toContain('POST http://127.0.0.1:3000/v1/signups');
    // A worker has no page to point at; it closes the days, and says when.
    const worker = firstScreen('(no HTTP listener)', { kind: 'pglite' }, ['worker'], undefined, {
      dailySales: { cron: '5 0 * * *', timeZone: 'Europe/Berlin' },
    });
    expect(worker).not.toContain('dashboard');
    expect(worker).toContain("schedules  shop.daily-sales closes each day on '5 0 * * *' Europe/Berlin");
    expect(embedded).not.toContain('schedules  ');
    // In memory, nothing survives: the screen must not promise it.
    const inMemory = firstScreen('http://127.0.0.1:3000', { kind: 'pglite', dataDir: 'memory://' }, ['api']);
    expect(inMemory).toContain('data       in memory (gone when the process stops)');
    expect(inMemory).not.toContain('survives');

    const server = { kind: 'pg', url: 'postgres://shop:secret@db:5432/shop' } as const;
    const table = firstScreen('http://127.0.0.1:3000', server, ['api']);
    expect(table).toContain('postgres://shop:***@db:5432/shop');
    expect(table).toContain('KEEL_OUTBOX=wal streams events from the WAL instead');
    const wal = firstScreen('http://127.0.0.1:3000', server, ['api'], {
      kind: 'wal',
      connectionString: server.url,
    });
    expect(wal).toContain('outbox     WAL: events as logical messages, streamed from the slot keel_outbox');

    // Where the queues run and where mail goes, secrets hidden.
    const split = firstScreen('http://127.0.0.1:3000', server, ['worker'], undefined, {
      broker: { kind: 'rabbitmq', url: 'amqp://shop:secret@mq:5672', prefix: 'staging.' },
      mail: { kind: 'smtp', url: 'smtp://mailer:pw@mail:587', from: 'shop <shop@x>' },
    });
    expect(split).toContain('queues     rabbitmq at amqp://shop:***@mq:5672, names under staging.');
    expect(split).toContain('mail       SMTP smtp://mailer:***@mail:587');
    const mailbox = firstScreen('http://127.0.0.1:3000', server, ['worker'], undefined, {
      mail: { kind: 'mailbox', dir: '.keel/mailbox', from: 'shop <shop@x>' },
    });
    expect(mailbox).toMatch(/mail {7}\/.*\.keel\/mailbox \(one \.eml file a mail/);
  });
});
