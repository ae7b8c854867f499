// What operators ask of a stream's projection positions (`keel_stream_positions`): list them with
// their lag and whether one holds retention back, and forget a retired one. `PgStream.projections`
// and `PgStream.forgetProjection` are the public doors; the names are checked there.
import type { Queryable } from '../../../db/db.ts';
import { KeelError, NotFoundError } from '../../../errors/index.ts';

/** One projection's stored position on a stream, as `PgStream.projections` reads it. */
export interface ProjectionPosition {
  /** Its name (`ProjectionRunnerOptions.name`). */
  projection: string;
  /** The last position it applied; 0 before its first batch. */
  position: number;
  /** Entries appended that it has not applied: head minus position (trimmed ones included). */
  lag: number;
  /**
   * When its position was last stored (`updated_at`): by a batch, `rebuild()`, or `onTrimmed:
   * 'resume'`, else when its runner first looked for entries. A retired projection's stops here.
   */
  updatedAt: Date;
  /**
   * A trim passed its position: entries it has not applied are gone, so its runner fails with
   * `StreamTrimmedError` (unless `onTrimmed: 'resume'`) until it is rebuilt.
   */
  trimmedPast: boolean;
  /**
   * A trim with `keepUnappliedBy: 'any-projection'` stops at its position: it is the stream's lowest
   * and below the head. Every projection at that lowest position holds it: forgetting one of several
   * alone lets no further entry go.
   */
  holdsTrim: boolean;
}

/** A stream's bounds and every projection with a stored position on it, by name. */
export interface StreamProjections {
  stream: string;
  /** The first retained position (`StreamBounds.first`). */
  first: number;
  /** The head: the last committed position, 0 before the first append. */
  last: number;
  projections: ProjectionPosition[];
}

/** The stored position `PgStream.forgetProjection` deleted, as it was when deleted. */
export interface ForgottenProjection {
  stream: string;
  projection: string;
  position: number;
  /** Head minus position when it was deleted. */
  lag: number;
  updatedAt: Date;
}

/**
 * A projection has no stored position on a stream (`KEEL_NOT_FOUND`). `during: 'forget'`: asked to
 * forget a projection with none (a typo, or forgotten already). `during: 'apply'`: a running
 * `ProjectionRunner` found its row deleted (`forgetProjection`) since it stored it; it does not
 * store it again, and fails each batch with this error until it is stopped, or `rebuild()` starts
 * the projection over.
 */
export class ProjectionNotFoundError extends KeelError {
  readonly stream: string;
  readonly projection: string;
  readonly during: 'forget' | 'apply';
  constructor(stream: string, projection: string, during: 'forget' | 'apply') {
    super(
      'KEEL_NOT_FOUND',
      during === 'forget'
        ? `projection ${projection} has no stored position on stream ${stream}`
        : `projection ${projection}'s position on stream ${stream} was forgotten while its runner ran; ` +
            'the runner applies nothing until it is stopped, or rebuild() starts the projection over',
      { details: { stream, projection, during } },
    );
    this.stream = stream;
    this.projection = projection;
    this.during = during;
  }
}

interface PositionRow {
  first: string | null;
  last: string | null;
  projection: string | null;
  position: string | null;
  updated_at: Date | string | null;
}

// One statement, so the bounds and the positions come from one snapshot: a batch or a trim that
// commits between two reads cannot show a lag below 0 or a projection the trim already passed.
const streamProjections = `SELECT h.first_position::text AS first, h.position::text AS last,
    p.projection, p.position::text AS position, p.updated_at
  FROM (SELECT $1::text AS stream) AS s
  LEFT JOIN keel_stream_heads AS h ON h.stream = s.stream
  LEFT JOIN keel_stream_positions AS p ON p.stream = s.stream
  ORDER BY p.projection`;

function date(value: Date | string): Date {
  return value instanceof Date ? value : new Date(value);
}

/** See `PgStream.projections`. */
export async function listProjections(via: Queryable, stream: string): Promise<StreamProjections> {
  const { rows } = await via.query<PositionRow>(streamProjections, [stream]);
  const head = rows[0];
  if (head === undefined || (head.last === null && head.projection === null))
    throw new NotFoundError('stream', stream);
  const first = Number(head.first ?? 1);
  const last = Number(head.last ?? 0);
  const stored = rows.filter((row) => row.projection !== null);
  const lowest = Math.min(...stored.map((row) => Number(row.position)));
  return {
    stream,
    first,
    last,
    projections: stored.map((row) => {
      const position = Number(row.position);
      return {
        projection: row.projection!,
        position,
        lag: Math.max(0, last - position),
        updatedAt: date(row.updated_at!),
        trimmedPast: position < first - 1,
        holdsTrim: position === lowest && position < last,
      };
    }),
  };
}

// A single DELETE: it takes the row's lock, so it waits for a runner's batch in flight (which
// holds it FOR UPDATE) or a trim batch reading it FOR SHARE, and deletes the position that batch
// committed (READ COMMITTED re-reads the row it waited for). The head comes from the statement's
// snapshot, which a batch that committed meanwhile may have passed: the lag is clamped at 0.
const deletePosition = `DELETE FROM keel_stream_positions WHERE stream = $1 AND projection = $2
  RETURNING position::text AS position, updated_at,
    (SELECT position::text FROM keel_stream_heads WHERE stream = $1) AS last`;

/** See `PgStream.forgetProjection`. */
export async function forgetProjection(
  via: Queryable,
  stream: string,
  projection: string,
): Promise<ForgottenProjection> {
  const { rows } = await via.query<{ position: string; updated_at: Date | string; last: string | null }>(
    deletePosition,
    [stream, projection],
  );
  const row = rows[0];
  if (row === undefined) throw new ProjectionNotFoundError(stream, projection, 'forget');
  const position = Number(row.position);
  return {
    stream,
    projection,
    position,
    lag: Math.max(0, Number(row.last ?? 0) - position),
    updatedAt: date(row.updated_at),
  };
}
