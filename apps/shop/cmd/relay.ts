// The outbox poller alone: moves committed outbox rows to the queue.
import { runShop } from './run-shop.ts';

await runShop(['relay'], { banner: false });
