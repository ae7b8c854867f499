#!/usr/bin/env node
// The `keel` command: `npm run keel -- outbox status`.
import { runCli } from './main.ts';
import { runFlagsCli } from './flags-cli.ts';
import { runSagaCli } from './saga-cli.ts';
import { runScheduleCli } from './schedule-cli.ts';
import { runStreamCli } from './stream-cli.ts';

const argv = process.argv.slice(2);
const commands: Record<string, typeof runCli> = {
  saga: runSagaCli,
  flags: runFlagsCli,
  stream: runStreamCli,
  schedule: runScheduleCli,
};
process.exitCode = await (commands[argv[0] ?? ''] ?? runCli)(argv, {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
  env: process.env,
});
