import { z } from 'zod';

// What `/readyz` answers: the process's readiness and each part's health (keel's
// `healthReport`), so an operator sees which part lost which dependency without reading logs.

const isoTime = z.iso.datetime({ offset: true });

/** One part's health: `ServiceHealthReport` in keel/service. */
export const partHealth = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('ok'),
    lastContactAt: isoTime.optional().describe('The last answer from any of its dependencies'),
  }),
  z.object({
    status: z.literal('failing'),
    dependency: z.string().describe('What it does not reach: `database`, `broker` or `replication`'),
    during: z.string().optional().describe('What it was doing when the last call failed'),
    since: isoTime,
    failures: z.number().int().min(0).describe('Calls failed in a row; 0 when a call hangs'),
    error: z.string().optional().describe('The last error’s code; the message is in the logs'),
    lastContactAt: isoTime.optional(),
  }),
  z.object({
    status: z.literal('not-running'),
    state: z.string(),
  }),
]);

export const readinessResource = z.object({
  status: z
    .enum(['ready', 'degraded'])
    .describe('`degraded`: a part is failing; the process still takes traffic (its database answers)'),
  parts: z.record(z.string(), partHealth).optional().describe('Each long-running part, by name'),
});
