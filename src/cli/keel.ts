#!/usr/bin/env node
// The `keel` command: `npm run keel -- outbox status`.
import { runCli } from './main.ts';
import { runSagaCli } from './saga-cli.ts';

const argv = process.argv.slice(2);
process.exitCode = await (argv[0] === 'saga' ? runSagaCli : runCli)(argv, {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
  env: process.env,
});
