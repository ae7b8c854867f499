import { parseArgs } from 'node:util';

import type { Db } from '../db/index.ts';
import { InvalidArgumentError, KeelError } from '../errors/index.ts';
import { PgStream, type TrimOptions } from '../messaging/index.ts';
import { parseDuration } from '../time/index.ts';
import { withCliDb, type CliIo } from './cli-io.ts';

const usage = `keel stream — operate PostgreSQL streams (PgStream) and their projections

  keel stream status [<stream>]           each stream's first and last position, and each
                                          projection's position on it and how far behind it is
  keel stream projections <stream>        each projection stored on the stream: its position, lag,
                                          when it last moved, and whether it holds back a trim
                                          that keeps unapplied entries (--keep-unapplied)
  keel stream forget <stream> <projection>
                                          delete a retired projection's stored position, so it no
                                          longer holds the stream back; a runner of it still
                                          running stops applying (see docs/messaging.md)
  keel stream trim <stream> [--keep-last N] [--older-than D] [--before P]
                   [--keep-unapplied | --keep-unapplied-by NAME,...]
                                          delete the oldest entries that every bound given allows;
                                          D is a duration (90s, 30m, 12h, 7d); --keep-unapplied
                                          keeps what any projection of the stream has not applied
                                          yet, --keep-unapplied-by what the named ones have not,
                                          and names the projections that held the trim back

The database comes from KEEL_DB (pglite|pg), DATABASE_URL and KEEL_DATA_DIR, as for the app.`;

function count(field: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value))
    throw new InvalidArgumentError(field, 'an integer >= 0', text);
  return value;
}

interface StreamRow {
  stream: string;
  first: string;
  last: string;
}

interface PositionRow {
  projection: string;
  stream: string;
  position: string;
  updated_at: Date | string;
}

async function status(db: Db, io: CliIo, only: string | undefined): Promise<number> {
  const { rows: streams } = await db.query<StreamRow>(
    `SELECT stream, first_position::text AS first, position::text AS last FROM keel_stream_heads
     WHERE $1::text IS NULL OR stream = $1 ORDER BY stream`,
    [only ?? null],
  );
  if (only !== undefined && streams.length === 0) {
    io.err(`no stream named ${only} (nothing was ever appended to it)`);
    return 1;
  }
  const { rows: positions } = await db.query<PositionRow>(
    `SELECT projection, stream, position::text AS position, updated_at FROM keel_stream_positions
     WHERE $1::text IS NULL OR stream = $1 ORDER BY stream, projection`,
    [only ?? null],
  );
  for (const { stream, first, last } of streams) {
    const held = Math.max(0, Number(last) - Number(first) + 1);
    io.out(`${stream}  first ${first}  last ${last}  entries ${held}`);
    for (const row of positions.filter((p) => p.stream === stream)) {
      const position = Number(row.position);
      const trimmedPast = position < Number(first) - 1 ? '  (entries it has not applied were trimmed)' : '';
      io.out(
        `  ${row.projection}  position ${position}  lag ${Math.max(0, Number(last) - position)}  updated ${new Date(row.updated_at).toISOString()}${trimmedPast}`,
      );
    }
  }
  if (streams.length === 0) io.err('no streams');
  return 0;
}

/** Columns padded to their widest cell, two spaces apart; the last one is not padded. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** `keel stream projections <stream>`: Kafka's `kafka-consumer-groups --describe`, per stream. */
async function projections(db: Db, io: CliIo, stream: string): Promise<number> {
  const { first, last, projections } = await new PgStream(db).projections(stream);
  io.out(`${stream}  first ${first}  last ${last}  entries ${Math.max(0, last - first + 1)}`);
  if (projections.length === 0) {
    io.out('no projection has a stored position on it');
    return 0;
  }
  const rows = projections.map((p) => {
    const notes = [
      ...(p.holdsTrim ? ['holds back --keep-unapplied trims'] : []),
      ...(p.trimmedPast ? ['entries it has not applied were trimmed'] : []),
    ];
    return [p.projection, String(p.position), String(p.lag), p.updatedAt.toISOString(), notes.join('; ')];
  });
  for (const line of table([['PROJECTION', 'POSITION', 'LAG', 'UPDATED', ''], ...rows])) io.out(line);
  return 0;
}

/** `keel stream forget <stream> <projection>`: asks nothing; says what it deleted. */
async function forget(db: Db, io: CliIo, stream: string, projection: string): Promise<number> {
  const gone = await new PgStream(db).forgetProjection(stream, projection);
  io.out(
    `${stream}: forgot projection ${projection} at position ${gone.position} (lag ${gone.lag}, ` +
      `updated ${gone.updatedAt.toISOString()}); trims no longer keep entries for it`,
  );
  return 0;
}

/**
 * `keel stream trim`: what it deleted, what the stream holds now and, when `--keep-unapplied`
 * stopped it short of what the other bounds allowed, which projections held it back and where:
 * the ones to look at (or forget, if retired) when a stream does not shrink.
 */
async function trim(db: Db, io: CliIo, stream: string, options: TrimOptions): Promise<number> {
  const streams = new PgStream(db);
  const { deleted, heldBy } = await streams.trimWithOutcome(stream, options);
  const { first, last } = await streams.bounds(stream);
  io.out(
    `${stream}: trimmed ${deleted} entr${deleted === 1 ? 'y' : 'ies'}; it now holds ${first} to ${last}`,
  );
  if (heldBy !== undefined) {
    const [one, ...more] = heldBy.projections;
    const who =
      more.length === 0
        ? `projection ${one}, which has`
        : `projections ${heldBy.projections.join(', ')}, which have`;
    io.out(`${stream}: held back at position ${heldBy.position} by ${who} not applied the entries after it`);
  }
  return 0;
}

/** The bounds of `keel stream trim`, from its flags; only those given. */
function trimOptions(values: Record<string, string | boolean | undefined>): TrimOptions {
  const text = (name: string): string | undefined => values[name] as string | undefined;
  const keepUnappliedBy = text('keep-unapplied-by');
  const options: TrimOptions = {};
  const keepLast = count('--keep-last', text('keep-last'));
  if (keepLast !== undefined) options.keepLast = keepLast;
  const before = count('--before', text('before'));
  if (before !== undefined) options.before = before;
  const olderThan = text('older-than');
  if (olderThan !== undefined) options.olderThanMs = parseDuration(olderThan, '--older-than');
  const batchSize = count('--batch-size', text('batch-size'));
  if (batchSize !== undefined) options.batchSize = batchSize;
  if (values['keep-unapplied'] === true) options.keepUnappliedBy = 'any-projection';
  if (keepUnappliedBy !== undefined)
    options.keepUnappliedBy = keepUnappliedBy.split(',').map((name) => name.trim());
  return options;
}

const commands = ['status', 'projections', 'forget', 'trim'];

/** `keel stream ...`: returns the process exit code. */
export async function runStreamCli(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        'keep-last': { type: 'string' },
        'older-than': { type: 'string' },
        before: { type: 'string' },
        'keep-unapplied': { type: 'boolean' },
        'keep-unapplied-by': { type: 'string' },
        'batch-size': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    // An unknown flag, or one without its value: node's own message names it.
    io.err(`${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  const { positionals, values } = parsed;
  const [group, command, stream, projection] = positionals;
  if (group !== 'stream' || command === undefined || values.help) {
    io.out(usage);
    return values.help ? 0 : 2;
  }
  if (!commands.includes(command)) {
    io.err(`unknown command: ${positionals.join(' ')}\n\n${usage}`);
    return 2;
  }
  // Checked before the database opens: a typo costs nothing.
  let options: TrimOptions;
  try {
    options = trimOptions(values);
    const extra = positionals.slice(command === 'forget' ? 4 : 3);
    // `forget orders a b` must not forget only `a`.
    if (extra.length > 0)
      throw new InvalidArgumentError(
        'arguments',
        `nothing after keel stream ${command === 'forget' ? 'forget <stream> <projection>' : `${command} <stream>`}`,
        extra.join(' '),
      );
    if (command !== 'trim' && Object.values(values).some((value) => value !== undefined))
      throw new InvalidArgumentError(command, `no options (keel stream ${command} takes none)`);
    if (command !== 'status' && stream === undefined)
      throw new InvalidArgumentError('stream', 'a stream name', stream);
    if (command === 'forget' && projection === undefined)
      throw new InvalidArgumentError('projection', 'a projection name', projection);
  } catch (error) {
    if (!(error instanceof KeelError)) throw error;
    io.err(`${error.code}: ${error.message}`);
    return 2;
  }
  return withCliDb(io, async (db) => {
    if (command === 'status') return status(db, io, stream);
    if (command === 'projections') return projections(db, io, stream!);
    if (command === 'forget') return forget(db, io, stream!, projection!);
    return trim(db, io, stream!, options);
  });
}
