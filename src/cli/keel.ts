// The `keel` command: `npm run keel -- outbox status`.
import { runCli } from './main.ts';

process.exitCode = await runCli(process.argv.slice(2), {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
  env: process.env,
});
