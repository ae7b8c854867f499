// The whole shop in one process: API, outbox relay and worker. `npm start` runs this.
import { runShop } from './run-shop.ts';

await runShop(['api', 'worker', 'relay'], { banner: true });
