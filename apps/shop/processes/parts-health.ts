import { healthReport, type ServiceHealth, type ServiceHealthReport } from '../../../src/service/index.ts';

/**
 * A process's parts' health by part name (`ServiceGroup.healthOfParts`) as its row in
 * `processes` keeps it: `healthReport`s, JSON-safe and with errors reduced to their codes.
 */
export type PartsHealth = Readonly<Record<string, ServiceHealthReport>>;

/** `parts` as a row keeps them: for `ProcessHeartbeat`'s `health` and the dashboard. */
export function partsHealthReport(parts: Readonly<Record<string, ServiceHealth>>): PartsHealth {
  return Object.fromEntries(Object.entries(parts).map(([name, health]) => [name, healthReport(health)]));
}

/**
 * Each part's health as it last ran: `read`, except a part stopping or stopped, which keeps its
 * report in `earlier` (if any). What a process's row keeps when it stops: a group stops the
 * heartbeat after the parts it starts later, and read then they would all say only 'stopped',
 * which the row already says. A part that failed rather than stopped shows as read.
 */
export function partsHealthAsTheyRan(read: PartsHealth, earlier: PartsHealth): PartsHealth {
  return Object.fromEntries(
    Object.entries(read).map(([name, health]) => {
      const stopped =
        health.status === 'not-running' && (health.state === 'stopping' || health.state === 'stopped');
      return [name, stopped ? (earlier[name] ?? health) : health];
    }),
  );
}
