// The orders bench's client in a process of its own (BENCH_CLIENT=process): it runs each round
// the parent sends over IPC and answers with what it measured, until the parent disconnects.
import { postOrders, type LoadRequest } from './closed-loop.ts';

process.on('message', (request: LoadRequest) => {
  void postOrders(request).then(
    (result) => process.send!({ result }),
    (error: unknown) => process.send!({ error: String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
