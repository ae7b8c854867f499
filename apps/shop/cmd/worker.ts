// The queue worker alone: handles order events from the PostgreSQL queue.
import { runShop } from './run-shop.ts';

await runShop(['worker'], { banner: false });
