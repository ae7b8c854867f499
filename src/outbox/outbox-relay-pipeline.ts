// A started relay's loop: the next batch claimed while one is published, the published rounds
// marked beside the claims or with the next one, a failed round's later claims given back, and on
// stop what was published marked. The steps themselves are the relay's (outbox-relay.ts).
import { v7 as uuidv7 } from 'uuid';
import type { DbDialect } from '../db/db.ts';
import type { Claim } from './outbox-claims.ts';
import { MarkQueue } from './outbox-relay-marks.ts';
import type { Round } from './outbox-relay-round.ts';
import type { RelayWakeUps } from './outbox-relay-wake-ups.ts';

/** What the loop drives: the relay's steps, its wake-ups and its reports. */
export interface RelaySteps {
  /** 'pg': the marks run beside the claims; else they ride with the next claim. */
  readonly dialect: DbDialect;
  readonly wakeUps: RelayWakeUps;
  /** Whether the breaker lets a claim be made now. */
  mayClaim(): boolean;
  /** Claims a batch for `owner`, writing the marks of `published` in the same transaction. */
  claim(owner: string, published: readonly Round[]): Promise<Claim>;
  publish(claim: Claim): Promise<Round>;
  /** Marks the rounds' published rows and ends their claims and the `released` ones. */
  finish(rounds: readonly Round[], released: readonly string[], onFailure: 'resume' | 'drop'): Promise<void>;
  /** Emits `published` for rounds whose mark committed with a claim. */
  emitPublished(rounds: readonly Round[]): void;
  /** The cleaner's run when it is due (it never rejects), else undefined: the loop goes on at once. */
  cleanUpIfDue(): Promise<unknown> | undefined;
  /** A failure the loop survived (`error`, `during: 'relay'`). */
  reportError(error: unknown): void;
}

/**
 * A pipeline of two: while batch N is published, batch N+1 is claimed, and the batches
 * published before N are marked. The claims of one run share an owner, whose own claims do not
 * hold their keys back, so N+1 may hold later rows of N's keys: it is published only after N
 * was, and given back unpublished if N fails.
 *
 * On PostgreSQL the marks run beside the claims, in transactions of their own on another pooled
 * connection (MarkQueue), so a claim does not wait for the mark; on PGlite, whose one
 * connection runs one transaction at a time, they ride in the next claim's transaction.
 */
export async function runRelayPipeline(steps: RelaySteps): Promise<void> {
  const { wakeUps } = steps;
  let owner = uuidv7();
  const beside =
    steps.dialect === 'pg'
      ? new MarkQueue<Round>(
          // A mark that fails is retried: its claims must stay alive until then.
          (rounds) => steps.finish(rounds, [], 'resume'),
          (error) => steps.reportError(error),
        )
      : undefined;
  /** Rounds published and not yet marked that ride with the next claim (or the next finish). */
  const unmarked: Round[] = [];
  /** Every round published and not yet marked, after the mark in flight (if any) settled. */
  const takeUnmarked = async (): Promise<Round[]> => {
    const failed = beside === undefined ? [] : await beside.settle();
    return [...failed, ...unmarked.splice(0)];
  };
  let next: Promise<Claim> | undefined;
  let failures = 0;
  const claimNext = async (): Promise<Claim> => {
    const marks = unmarked.splice(0);
    try {
      const claim = await steps.claim(owner, marks);
      steps.emitPublished(marks);
      return claim;
    } catch (error) {
      // The marks rolled back with the claim: they go with the next one.
      unmarked.unshift(...marks);
      throw error;
    }
  };
  /** The claim made ahead, if any, no longer ahead; its failure is thrown only when asked for. */
  const takeNext = async (rethrow = false): Promise<Claim | undefined> => {
    const pending = next;
    next = undefined;
    return rethrow ? pending : pending?.catch(() => undefined);
  };
  while (!wakeUps.stopping) {
    wakeUps.beginRound();
    let moved = 0;
    let claim: Claim | undefined;
    try {
      claim = next !== undefined ? await takeNext(true) : steps.mayClaim() ? await claimNext() : undefined;
      if (claim === undefined || claim.rows.length === 0) {
        // Marked now before the relay idles; after a wake-up they ride with the next claim.
        const rest = await takeUnmarked();
        if (rest.length > 0 && !wakeUps.pending) await steps.finish(rest, [], 'drop');
        else unmarked.push(...rest);
      } else {
        if (steps.mayClaim()) {
          next = claimNext();
          // Observed at once: a failure is reported when the next round awaits it.
          next.catch(() => undefined);
        }
        const round = await steps.publish(claim);
        moved = round.published.length;
        if (round.ok) {
          if (beside === undefined) unmarked.push(round);
          else beside.add(round);
        } else {
          // The claim made ahead may hold later rows of the failed rows' keys: it goes back.
          const ahead = await takeNext();
          await steps.finish(
            [...(await takeUnmarked()), round],
            ahead === undefined ? [] : [ahead.id],
            'drop',
          );
        }
      }
      failures = 0;
    } catch (error) {
      failures++;
      steps.reportError(error);
      // A statement failed mid-round: the claims in hand go back (their published rows will be
      // published again), and a new owner's claims are held back by any that stay, until they
      // expire, so no later row of their keys goes out first.
      owner = uuidv7();
      const ahead = await takeNext();
      const held = [claim?.id, ahead?.id].filter((id) => id !== undefined);
      await steps.finish([], held, 'drop').catch(() => undefined);
      await wakeUps.backOff(failures);
      continue;
    }
    const cleaning = steps.cleanUpIfDue();
    if (cleaning !== undefined) await cleaning;
    if (moved > 0 || wakeUps.pending || next !== undefined) continue;
    await wakeUps.idle();
  }
  // Stopping: the claim made ahead goes back unpublished, what was published is marked.
  const ahead = await takeNext();
  const rest = await takeUnmarked();
  if (ahead !== undefined || rest.length > 0) {
    await steps
      .finish(rest, ahead === undefined ? [] : [ahead.id], 'drop')
      .catch((error: unknown) => steps.reportError(error));
  }
}
