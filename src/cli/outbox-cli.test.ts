import { describe, expect, it } from 'vitest';
import { createEnvelope } from '../messaging/index.ts';
import { addToOutbox, outboxMigrations } from '../outbox/index.ts';
import { outboxCliTests, runCommand } from './cli-test-support.ts';
import { runCli } from './main.ts';

const { setup, cli } = outboxCliTests();

describe('keel outbox retry', () => {
  it('names each --id it did not retry, and why, and exits 1', async () => {
    const db = await setup();
    const [parked, waiting] = [1, 2].map((n) => createEnvelope({ type: 'job.run.v1', payload: n }));
    await db.transaction((tx) => addToOutbox(tx, 'jobs', [parked!, waiting!]));
    await db.query(`UPDATE keel_outbox SET parked_at = now(), attempts = 10 WHERE id = $1`, [parked!.id]);
    const missing = createEnvelope({ type: 'job.run.v1', payload: 3 }).id;
    const retry = await cli(db, 'outbox', 'retry', '--id', parked!.id, '--id', waiting!.id, '--id', missing);
    expect(retry.out).toEqual(['1 parked row(s) will be published again']);
    expect(retry.err).toEqual([
      `${waiting!.id}: not parked (waiting to be published)`,
      `${missing}: not in the outbox (no such message, or published and pruned)`,
    ]);
    expect(retry.code).toBe(1);
    // All given ids retried: 0.
    await db.query(`UPDATE keel_outbox SET parked_at = now() WHERE id = $1`, [waiting!.id]);
    expect(await cli(db, 'outbox', 'retry', '--id', waiting!.id)).toEqual({
      code: 0,
      out: ['1 parked row(s) will be published again'],
      err: [],
    });
  });

  it('refuses an --id that is no message id, naming it', async () => {
    const db = await setup();
    const retry = await cli(db, 'outbox', 'retry', '--id', 'job-7');
    expect(retry.code).toBe(1);
    expect(retry.err).toEqual(['KEEL_INVALID_ARGUMENT: --id: expected a message id (a UUID), got "job-7"']);
  });
});

describe('keel outbox drain', () => {
  it('refuses to drain into the PostgreSQL queue in a service on another broker (KEEL_BROKER), touching nothing', async () => {
    const db = await setup();
    await db.transaction((tx) => addToOutbox(tx, 'jobs', createEnvelope({ type: 'job.run.v1', payload: 1 })));
    const refused = await runCommand(runCli, db, ['outbox', 'drain'], { KEEL_BROKER: 'rabbitmq' });
    expect(refused.code).toBe(2);
    expect(refused.err[0]).toMatch(
      /^KEEL_BROKER is rabbitmq: keel outbox drain publishes to the PostgreSQL queue only/,
    );
    expect((await cli(db, 'outbox', 'status')).out).toContain('backlog    1');
    // On the PostgreSQL queue's own service it drains as before.
    const drained = await runCommand(runCli, db, ['outbox', 'drain'], { KEEL_BROKER: 'postgres' });
    expect(drained.code).toBe(0);
  });

  it('exits 1 when it parked a row itself, and says so', async () => {
    const db = await setup();
    // The PostgreSQL queue refuses this name for good: the drain parks the row at once.
    await db.transaction((tx) =>
      addToOutbox(
        tx,
        'jobs',
        [1, 2].map((n) => createEnvelope({ type: 'job.run.v1', payload: n })),
      ),
    );
    const refused = createEnvelope({ type: 'job.run.v1', payload: 3 });
    await db.transaction((tx) => addToOutbox(tx, 'bad queue!', refused));
    const drain = await cli(db, 'outbox', 'drain');
    expect(drain.out).toEqual(['published 2; backlog 0, parked 1']);
    expect(drain.err).toEqual([
      'drained 2/3',
      expect.stringMatching(
        new RegExp(`^parked ${refused.id}: InvalidArgumentError: destination: expected a queue name`),
      ),
      'parked 1 row(s) during this drain: keel outbox status, then keel outbox retry once the cause is fixed',
    ]);
    expect(drain.code).toBe(1);
    // Parked before the drain: counted, exit 0, as documented.
    const again = await cli(db, 'outbox', 'drain');
    expect(again).toEqual({ code: 0, out: ['published 0; backlog 0, parked 1'], err: [] });
  });

  it('says why a publish failed, when rows stay unpublished', async () => {
    // The outbox without the PostgreSQL queue's tables: every publish fails.
    const db = await setup(outboxMigrations);
    await db.transaction((tx) =>
      addToOutbox(
        tx,
        'jobs',
        [1, 2].map((n) => createEnvelope({ type: 'job.run.v1', payload: n })),
      ),
    );
    const drain = await cli(db, 'outbox', 'drain');
    expect(drain.code).toBe(1);
    expect(drain.out).toEqual(['published 0; backlog 2, parked 0']);
    expect(drain.err).toEqual([
      expect.stringMatching(
        /^publishing 2 message\(s\) to jobs failed \(tried again later\): .*keel_queue.* does not exist/,
      ),
    ]);
  });
});
