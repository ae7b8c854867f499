import { parseArgs } from 'node:util';

import { InvalidArgumentError } from '../errors/index.ts';
import {
  getSaga,
  listSagas,
  retrySaga,
  sagaStates,
  type SagaInstance,
  type SagaState,
} from '../saga/index.ts';
import { withCliDb, type CliIo } from './cli-io.ts';

const usage = `keel saga — operate saga instances

  keel saga list [--state S] [--saga NAME] [--limit N]
                                          instances, newest first; S is one of ${sagaStates.join(', ')}
  keel saga show <id>                     one instance: state, step, results, errors, and its history
  keel saga retry <id>                    resume a parked compensation (NEEDS_ATTENTION) with fresh attempts

The database comes from KEEL_DB (pglite|pg), DATABASE_URL and KEEL_DATA_DIR, as for the app.`;

const when = (date: Date | null): string => (date === null ? '-' : date.toISOString());
const json = (value: unknown): string => JSON.stringify(value);

function line(instance: SagaInstance): string {
  return [
    instance.id.padEnd(36),
    `${instance.saga}@${instance.version}`.padEnd(20),
    instance.state.padEnd(15),
    `step ${instance.step}`.padEnd(8),
    when(instance.updatedAt),
  ].join(' ');
}

/** `keel saga ...`: returns the process exit code. */
export async function runSagaCli(argv: readonly string[], io: CliIo): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      state: { type: 'string' },
      saga: { type: 'string' },
      limit: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [group, command, target] = positionals;
  if (group !== 'saga' || command === undefined || values.help) {
    io.out(usage);
    return values.help ? 0 : 2;
  }
  return withCliDb(io, async (db) => {
    switch (command) {
      case 'list': {
        const state = values.state?.toUpperCase();
        if (state !== undefined && !sagaStates.includes(state as SagaState)) {
          throw new InvalidArgumentError('--state', sagaStates.join(', '), values.state);
        }
        const limit = values.limit === undefined ? 100 : Number(values.limit);
        const found = await listSagas(db, {
          ...(state === undefined ? {} : { state: state as SagaState }),
          ...(values.saga === undefined ? {} : { saga: values.saga }),
          limit,
        });
        for (const instance of found) io.out(line(instance));
        io.err(`${found.length} instance(s)`);
        return 0;
      }
      case 'show': {
        if (target === undefined) throw new InvalidArgumentError('id', 'a saga instance id', target);
        const { instance, history } = await getSaga(db, target);
        io.out(`id         ${instance.id}`);
        io.out(`saga       ${instance.saga}@${instance.version}`);
        io.out(`state      ${instance.state}`);
        io.out(`step       ${instance.step} (attempts ${instance.attempts})`);
        if (instance.waitingFor !== null) {
          io.out(`waiting    reply to ${instance.waitingFor} until ${when(instance.deadlineAt)}`);
        }
        io.out(`lease      ${instance.leaseOwner ?? '-'} until ${when(instance.leaseUntil)}`);
        io.out(`input      ${json(instance.input)}`);
        io.out(`results    ${json(instance.results)}`);
        if (instance.failure !== null) io.out(`failure    ${json(instance.failure)}`);
        if (instance.lastError !== null) io.out(`parked on  ${json(instance.lastError)}`);
        io.out(`created    ${when(instance.createdAt)}`);
        io.out(`finished   ${when(instance.finishedAt)}`);
        io.out('history');
        for (const h of history) {
          const parts = [when(h.at), h.event.padEnd(22), h.step ?? '-'];
          if (h.attempt !== null) parts.push(`attempt ${h.attempt}`);
          if (h.owner !== null) parts.push(`by ${h.owner}`);
          if (h.detail !== null) parts.push(json(h.detail));
          io.out(`  ${parts.join('  ')}`);
        }
        return 0;
      }
      case 'retry': {
        if (target === undefined) throw new InvalidArgumentError('id', 'a saga instance id', target);
        await retrySaga(db, target, { by: 'keel saga retry' });
        io.out(`${target} will resume compensating`);
        return 0;
      }
      default:
        io.err(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
        return 2;
    }
  });
}
